//! Support for the signature end-to-end tests: a real OCI registry (Debian's
//! `docker-registry`) on 127.0.0.1 with our own config (plain HTTP, or TLS with a CA made
//! in the test, optionally htpasswd basic auth), image pushes with oci-client, and cosign
//! signatures built in cosign's exact format (see `registry/cosign.rs`).

pub mod cosign;
pub mod keyless;
pub mod sigstore_js;
pub mod slow_proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::process::{free_port, wait_for_port, ChildGuard};

/// Path of a tool installed by `tests/setup/registry.sh`, or a panic saying how to get it.
fn tool(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_string()));
    assert!(
        path.exists(),
        "{} is missing: run tests/run.sh (tests/setup/registry.sh installs it) or set {env}",
        path.display()
    );
    path
}

/// TLS material for a registry: a CA made in the test and a server certificate for
/// 127.0.0.1 issued by it.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "guardrail test registry CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// How to run a registry.
#[derive(Default)]
pub struct RegistryOptions<'a> {
    pub tls: Option<&'a TestCa>,
    /// Basic-auth user and password (htpasswd, bcrypt).
    pub basic_auth: Option<(&'a str, &'a str)>,
}

/// A running `docker-registry`, killed when dropped.
pub struct TestRegistry {
    guard: Option<ChildGuard>,
    pub addr: SocketAddr,
    /// `127.0.0.1:<port>`: the registry part of image references.
    pub host: String,
    pub dir: tempfile::TempDir,
    tls_ca: Option<String>,
    auth: RegistryAuth,
}

impl TestRegistry {
    pub fn start(options: RegistryOptions<'_>) -> Self {
        let bin = tool("GUARDRAIL_REGISTRY_BIN", "/usr/bin/docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(ca) = options.tls {
            let cert = write(dir.path(), "server.pem", &ca.cert_pem);
            let key = write(dir.path(), "server-key.pem", &ca.key_pem);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        let mut auth = RegistryAuth::Anonymous;
        if let Some((user, password)) = options.basic_auth {
            let htpasswd = tool("GUARDRAIL_HTPASSWD_BIN", "/usr/bin/htpasswd");
            let out = Command::new(htpasswd)
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: guardrail-test\n    path: {}\n",
                file.display()
            ));
            auth = RegistryAuth::Basic(user.to_string(), password.to_string());
        }
        let config_path = write(dir.path(), "config.yml", &config);
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log));
        let guard = ChildGuard::spawn("docker-registry", &mut cmd);
        wait_for_port(addr, Duration::from_secs(20));
        Self {
            guard: Some(guard),
            addr,
            host: format!("127.0.0.1:{port}"),
            dir,
            tls_ca: options.tls.map(|ca| ca.ca_pem.clone()),
            auth,
        }
    }

    /// Kills the registry (to test unreachable registries).
    pub fn stop(&mut self) {
        self.guard = None;
    }

    /// The registry's combined access and error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many requests for `path_part` (e.g. `/manifests/sha256-…sig`) the log shows.
    pub fn requests_for(&self, path_part: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(path_part))
            .count()
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_ca
            .as_ref()
            .map(|pem| write(self.dir.path(), "ca.pem", pem))
    }

    /// A client that can push to this registry.
    pub fn client(&self) -> Client {
        let mut config = ClientConfig {
            protocol: if self.tls_ca.is_some() {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            ..ClientConfig::default()
        };
        if let Some(pem) = &self.tls_ca {
            config
                .extra_root_certificates
                .push(oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: pem.as_bytes().to_vec(),
                });
        }
        Client::new(config)
    }

    pub fn auth(&self) -> RegistryAuth {
        self.auth.clone()
    }

    /// Pushes a small unique image as `repo:tag`; returns its manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str) -> String {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let layer = ImageLayer::oci_v1(
            format!("model weights of {repo}:{tag} {nonce}").into_bytes(),
            None,
        );
        let config = Config::oci_v1(
            b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
            None,
        );
        let reference = Reference::with_tag(self.host.clone(), repo.to_string(), tag.to_string());
        let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        let client = self.client();
        client
            .push(&reference, &[layer], config, &self.auth, Some(manifest))
            .await
            .expect("push image");
        client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
            .expect("digest of pushed image")
    }

    /// `host/repo@digest` as a pod would name it.
    pub fn pinned(&self, repo: &str, digest: &str) -> Reference {
        format!("{}/{repo}@{digest}", self.host)
            .parse()
            .expect("valid reference")
    }
}

/// Writes `content` to `dir/name`, returning the path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write file");
    path
}

/// A verifier for the `signatures:` YAML `config`, with its own metrics registry.
pub fn verifier(
    config: &str,
    registry_auth: Option<&Path>,
) -> (
    guardrail_webhook::signatures::SignatureVerifier,
    prometheus_client::registry::Registry,
) {
    let config: guardrail_webhook::signatures::SignaturesConfig =
        serde_saphyr::from_str(config).unwrap_or_else(|e| panic!("bad test config: {e}\n{config}"));
    let mut metrics = prometheus_client::registry::Registry::default();
    let verifier =
        guardrail_webhook::signatures::SignatureVerifier::new(&config, registry_auth, &mut metrics)
            .unwrap_or_else(|e| panic!("verifier: {e}"));
    (verifier, metrics)
}

/// The value of the sample `series` (name plus labels, as in the text format), or 0.
pub fn metric(metrics: &prometheus_client::registry::Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, metrics).expect("encode metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
