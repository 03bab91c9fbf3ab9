//! Helpers of the certificate end-to-end tests: the real binary, kubelet-style
//! volumes, and an API-server-like TLS client that reports the served certificate.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use guardrail_e2e::{bins::bin, process::ChildGuard, webhook::admission_review};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const SERVICE: &str = "guardrail";
pub const NAMESPACE: &str = "guardrail-system";
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `serve` expecting it to refuse to start; returns its stderr.
pub fn refusal(args: &[&str]) -> String {
    let mut cmd = Command::new(bin("guardrail-webhook"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn("guardrail-webhook", &mut cmd);
    let stderr = guard.child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = guard.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit on bad TLS material"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("stderr reader");
    assert!(
        !status.success(),
        "serve exited 0 on bad material: {stderr}"
    );
    stderr
}

pub fn generate(out: &Path) {
    let output = Command::new(bin("guardrail-webhook"))
        .args([
            "certs",
            "generate",
            "--service",
            SERVICE,
            "--namespace",
            NAMESPACE,
            "--days",
            "30",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run certs generate");
    assert!(output.status.success(), "certs generate failed: {output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    for name in ["ca.crt", "ca.key", "tls.crt", "tls.key", "caBundle"] {
        assert!(
            printed.contains(&out.join(name).display().to_string()),
            "{printed}"
        );
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A client as the API server is one: trusts the caBundle, dials the Service name, no
/// session resumption (every connection reports the certificate it was sent).
pub fn client(ca_bundle_pems: &[String]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in ca_bundle_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("root");
        }
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One AdmissionReview over a new connection; returns the served certificate's serial.
pub async fn review(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    uid: &str,
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(format!("{SERVICE}.{NAMESPACE}.svc")).expect("name");
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server certificate")?;
    let serial = guardrail_certs::inspect_certificate(leaf.as_ref())
        .map_err(|e| e.to_string())?
        .serial;
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/model@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]},
    });
    let body = Full::new(Bytes::from(
        admission_review(uid, "CREATE", &pod).to_string(),
    ));
    let request = http::Request::post(format!("https://{SERVICE}.{NAMESPACE}.svc/validate"))
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    }
    .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{status}: {e}"))?;
    if status != 200 || answer["response"]["uid"] != uid {
        return Err(format!("{status}: unexpected answer {answer}"));
    }
    Ok(serial)
}

/// kubelet's AtomicWriter: new timestamped dir, `..data_tmp` symlink, rename over
/// `..data`, remove the old dir; `tls.crt`/`tls.key` point into `..data`.
pub struct Volume {
    dir: PathBuf,
    generation: u32,
}

impl Volume {
    pub fn new(dir: &Path, from: &Path) -> Self {
        let mut volume = Self {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.publish(from);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).expect("symlink");
        }
        volume
    }

    pub fn publish(&mut self, from: &Path) {
        self.generation += 1;
        let name = format!("..2026_01_01_00_00_00.{}", self.generation);
        std::fs::create_dir(self.dir.join(&name)).expect("generation dir");
        for file in ["tls.crt", "tls.key"] {
            std::fs::copy(from.join(file), self.dir.join(&name).join(file)).expect("copy");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        if self.generation > 1 {
            let old = format!("..2026_01_01_00_00_00.{}", self.generation - 1);
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old generation");
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

pub fn serial_of_pem(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate");
    guardrail_certs::inspect_certificate(der.as_ref())
        .expect("certificate")
        .serial
}
