//! Shared test support: certificates, a kubelet-style Secret volume, an in-process
//! AdmissionReview server on the crate's `ServerConfig`, and a TLS client that reports
//! which certificate it was served.
#![allow(dead_code)]

pub mod self_managed;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use guardrail_certs::{
    service_dns_names, Authority, CertError, Issued, ServingTls, TlsArgs, Validity,
};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::{pki_types::ServerName, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::FromDer;

pub const SERVICE: &str = "guardrail";
pub const NAMESPACE: &str = "guardrail-system";

pub fn names() -> Vec<String> {
    service_dns_names(SERVICE, NAMESPACE)
}

/// The name clients dial, as the API server does.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(format!("{SERVICE}.{NAMESPACE}.svc")).expect("valid DNS name")
}

/// A CA with a name of its own (CAs sharing a subject would be confused by verifiers).
pub fn ca(days: u32) -> Authority {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Authority::new(&format!("test CA {n}"), Validity::days_from_now(days)).expect("CA")
}

pub fn serving(ca: &Authority) -> Issued {
    ca.issue_serving(&names(), Validity::days_from_now(30))
        .expect("serving certificate")
}

/// Valid from `from_days` to `to_days` relative to now (negative = past).
pub fn validity(from_days: i64, to_days: i64) -> Validity {
    let at = |days: i64| {
        let offset = Duration::from_secs(days.unsigned_abs() * 86_400);
        if days < 0 {
            SystemTime::now() - offset
        } else {
            SystemTime::now() + offset
        }
    };
    Validity {
        not_before: at(from_days),
        not_after: at(to_days),
    }
}

pub fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A directory laid out the way kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<timestamp>/`; `publish` swaps `..data` atomically with a rename.
pub struct KubeletVolume {
    pub dir: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> Self {
        let mut volume = Self {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.publish(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("file symlink");
        }
        volume
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What kubelet's AtomicWriter does: new timestamped dir, `..data_tmp` symlink to
    /// it, rename over `..data`, remove the old dir.
    pub fn publish(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let new_dir = format!("..2026_11_26_00_00_00.{}", self.generation);
        let target = self.dir.join(&new_dir);
        std::fs::create_dir(&target).expect("timestamp dir");
        for (name, content) in files {
            write(&target.join(name), content);
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new_dir, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        if self.generation > 1 {
            let old = self
                .dir
                .join(format!("..2026_11_26_00_00_00.{}", self.generation - 1));
            std::fs::remove_dir_all(old).expect("remove old generation");
        }
    }
}

/// File-mode arguments for the test Service, so start-up checks the certificate's SANs.
pub fn file_args(cert: PathBuf, key: PathBuf) -> TlsArgs {
    let mut args = TlsArgs::files(cert, key);
    args.service_name = Some(SERVICE.into());
    args.service_namespace = Some(NAMESPACE.into());
    args
}

/// `ServingTls::start` with a fresh metrics registry; `shutdown` stops its reloader.
pub async fn start(
    args: &TlsArgs,
    shutdown: &CancellationToken,
) -> Result<(ServingTls, Registry), CertError> {
    let mut registry = Registry::default();
    let tls = ServingTls::start(args, &mut registry, shutdown.clone()).await?;
    Ok((tls, registry))
}

/// Serves AdmissionReview on `config` until the test ends; the listener is bound
/// before the address is returned.
pub async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (mTLS tests) simply ends this connection.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(admit);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// Allows every AdmissionReview, echoing its uid.
async fn admit(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let uid = review["request"]["uid"].clone();
    let response = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    Ok(Response::new(Full::new(Bytes::from(response.to_string()))))
}

pub fn client_config(trusted_ca_pems: &[&str], client: Option<&Issued>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in trusted_ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add root");
        }
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots);
    let mut config = match client {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client chain");
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Like the API server (Go, no session cache): every connection is a full handshake,
    // so the certificate each one reports is the one the server sent.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One AdmissionReview over a new connection. Returns the serial of the certificate
/// the server presented (x509-parser's rendering).
pub async fn review(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    uid: &str,
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = TlsConnector::from(config)
        .connect(server_name(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let serial = {
        let (_, conn) = tls.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no server certificate")?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| format!("server certificate: {e}"))?;
        cert.raw_serial_as_string()
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": uid, "operation": "CREATE"},
    });
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .header("host", format!("{SERVICE}.{NAMESPACE}.svc"))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("request: {e}"))?;
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => {
            // The connection task holds the cause (e.g. the TLS alert of a refused
            // client certificate, which TLS 1.3 only reports after the handshake).
            let cause = match conn.await {
                Ok(Err(conn_error)) => with_sources(&conn_error),
                _ => String::new(),
            };
            return Err(format!("request: {}: {cause}", with_sources(&e)));
        }
    };
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("response JSON: {e}"))?;
    if answer["response"]["uid"] != uid || answer["response"]["allowed"] != true {
        return Err(format!("unexpected AdmissionReview response {answer}"));
    }
    Ok(serial)
}

/// An error and all its causes, so TLS alerts behind an HTTP error are visible.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn serial_of(pem_path: &Path) -> String {
    guardrail_certs::inspect_pem_file(pem_path).expect("certificate")[0]
        .serial
        .clone()
}

/// The text exposition of `registry`.
pub fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode metrics");
    text
}
