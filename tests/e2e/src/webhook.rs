//! Support for the webhook end-to-end tests: TLS material made with rcgen, the real
//! `guardrail-webhook serve` binary on ephemeral ports, an HTTPS client that trusts the
//! test CA, and AdmissionReview builders.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};

use crate::{bins::bin, process::ChildGuard};

/// Host name the test client uses; it is pinned to the server's address and is in the
/// serving certificate's SANs.
pub const HOST: &str = "guardrail-webhook.test";

/// A CA and a serving certificate for [`HOST`], `localhost` and 127.0.0.1, in a temp dir.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    /// Name the client connects to (in the certificate's SANs).
    pub host: String,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "guardrail e2e CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().expect("serving key");
        let mut leaf = CertificateParams::new(vec![HOST.to_string(), "localhost".to_string()])
            .expect("params");
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf.distinguished_name.push(DnType::CommonName, HOST);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).expect("serving certificate");

        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let cert_path = write("tls.crt", &cert.pem());
        let key_path = write("tls.key", &key.serialize_pem());
        Self {
            host: HOST.to_string(),
            ca_pem: ca_cert.pem(),
            cert: cert_path,
            key: key_path,
            dir,
        }
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `guardrail-webhook serve` started with the caller's own arguments
/// (TLS flags included), killed when dropped. [`Webhook`] adds test certificates.
pub struct Serve {
    pub child: ChildGuard,
    /// HTTPS address of /validate.
    pub addr: SocketAddr,
    /// Plain HTTP address of /metrics.
    pub metrics_addr: SocketAddr,
    /// Every stderr (log) line so far; also echoed to the test's stderr.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `serve` on ephemeral ports with `args`, and waits until it prints both
    /// addresses (it does so once it is ready).
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(bin("guardrail-webhook"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,guardrail_webhook=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn("guardrail-webhook", &mut cmd);
        let stdout = child.child.stdout.take().expect("piped stdout");
        let stderr = child.child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[guardrail-webhook] {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut metrics_addr) = (None, None);
        while addr.is_none() || metrics_addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let status = child.child.try_wait().ok().flatten();
                    panic!("guardrail-webhook did not report its addresses (exit status: {status:?}); see its stderr above")
                }
            };
            if let Some(a) = line.strip_prefix("listening on https://") {
                addr = Some(a.parse().expect("listen address"));
            } else if let Some(a) = line.strip_prefix("metrics on http://") {
                metrics_addr = Some(a.parse().expect("metrics address"));
            }
        }
        Self {
            child,
            addr: addr.expect("address"),
            metrics_addr: metrics_addr.expect("metrics address"),
            logs,
        }
    }

    /// The Prometheus text of /metrics.
    pub async fn metrics(&self) -> String {
        metrics_text(self.metrics_addr).await
    }
}

async fn metrics_text(metrics_addr: SocketAddr) -> String {
    reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A running `guardrail-webhook serve` with [`TestCerts`], killed when dropped.
pub struct Webhook {
    pub child: ChildGuard,
    /// HTTPS address of /validate.
    pub addr: SocketAddr,
    /// Plain HTTP address of /metrics.
    pub metrics_addr: SocketAddr,
    pub certs: TestCerts,
    /// Every stderr (log) line so far; also echoed to the test's stderr.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    /// Starts the binary on ephemeral ports with `extra` flags (e.g. `--config`), and
    /// waits until it prints both addresses (it does so once it is ready).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(TestCerts::new(), extra)
    }

    /// Like [`Webhook::start`], serving the given certificates.
    pub fn start_with(certs: TestCerts, extra: &[&str]) -> Self {
        let (cert, key) = (path_arg(&certs.cert), path_arg(&certs.key));
        let args: Vec<&str> = ["--tls-cert", &cert, "--tls-key", &key]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let Serve {
            child,
            addr,
            metrics_addr,
            logs,
        } = Serve::start(&args);
        Self {
            child,
            addr,
            metrics_addr,
            certs,
            logs,
        }
    }

    /// Waits until a log line contains `needle` (the server's own signal that it reached
    /// a point, e.g. started reading a request), or panics after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        self.wait_for_log_count(needle, 1, timeout).await
    }

    /// Waits until at least `count` log lines contain `needle`.
    pub async fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) {
        crate::process::eventually(
            &format!("{count} log line(s) {needle:?}"),
            timeout,
            || async {
                let logs = self.logs.lock().expect("log lock");
                (logs.iter().filter(|l| l.contains(needle)).count() >= count).then_some(())
            },
        )
        .await
    }

    /// The server's log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Sends SIGTERM without waiting (see [`ChildGuard::terminate`] to wait for the exit).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// `https://guardrail-webhook.test:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.certs.host, self.addr.port())
    }

    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// A client that trusts only the test CA and resolves the certificate's host to this
    /// server.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("HTTPS client")
    }

    /// Same as [`Webhook::client`], for tests that need to tweak it (e.g. HTTP/1.1 only).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(self.certs.ca_pem.as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&self.certs.host, self.addr)
            .timeout(Duration::from_secs(20))
    }

    /// POSTs an AdmissionReview to /validate; returns the status and the JSON body.
    pub async fn validate(&self, client: &reqwest::Client, review: &Value) -> (u16, Value) {
        let response = client
            .post(self.url("/validate"))
            .json(review)
            .send()
            .await
            .expect("POST /validate");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// The Prometheus text of /metrics.
    pub async fn metrics(&self) -> String {
        metrics_text(self.metrics_addr).await
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}

/// An `admission.k8s.io/v1` AdmissionReview for `object` (apiVersion/kind taken from it).
pub fn admission_review(uid: &str, operation: &str, object: &Value) -> Value {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or("Pod");
    let resource = format!("{}s", kind.to_lowercase());
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr,
            "requestKind": gvk, "requestResource": gvr,
            "name": object["metadata"]["name"].as_str().unwrap_or(""),
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("default"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Workspace root (for `examples/` and fixtures).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The objects of a YAML file under the workspace root (multi-document aware).
pub fn manifest(relative: &str) -> Vec<Value> {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Pod in namespace `models` that passes every policy but signatures, running `image`.
pub fn probed_pod(name: &str, image: &str) -> Value {
    let probe = json!({"httpGet": {"path": "/v2/health/ready", "port": 8080}});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "models"},
        "spec": {"containers": [{
            "name": "server", "image": image,
            "readinessProbe": probe, "livenessProbe": probe,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
        }]}
    })
}
