//! Self-managed mode against the Kubernetes API emulator: an emulator holding the
//! WebhookConfiguration, the arguments, and readers of what the webhook stored.

use std::time::Duration;

use base64::Engine as _;
use guardrail_certs::{Authority, CertInfo, Issued, ServingTls, TlsArgs};
use kube_emulator::{Emulator, Options};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{NAMESPACE, SERVICE};

pub const SECRET: &str = "guardrail-webhook-tls";
pub const CONFIG: &str = "guardrail";
pub const VALIDATING: &str = "ValidatingWebhookConfiguration";
pub const MUTATING: &str = "MutatingWebhookConfiguration";

/// An emulator holding the ValidatingWebhookConfiguration `CONFIG`.
pub async fn emulator() -> Emulator {
    emulator_with(VALIDATING).await
}

/// The emulator's resource name (for faults) of a WebhookConfiguration kind.
pub fn resource(kind: &str) -> String {
    format!("{}s.admissionregistration.k8s.io", kind.to_lowercase())
}

/// An emulator holding one WebhookConfiguration `CONFIG` of `kind`.
pub async fn emulator_with(kind: &str) -> Emulator {
    let mut options = Options::default();
    options.namespaces.push(NAMESPACE.to_string());
    let emu = Emulator::start(options).await.expect("emulator");
    emu.put(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": CONFIG},
        "webhooks": [{
            "name": "pods.guardrail.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": SERVICE, "namespace": NAMESPACE, "path": "/validate"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
        }],
    }))
    .expect("seed WebhookConfiguration");
    emu
}

pub fn enc(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// Stores what an earlier replica would have: CA, serving pair and maybe a bundle.
pub fn seed_secret(emu: &Emulator, ca: &Authority, pair: &Issued, bundle: Option<&str>) {
    let mut data = json!({
        "ca.crt": enc(ca.cert_pem()),
        "ca.key": enc(ca.key_pem()),
        "tls.crt": enc(&pair.cert_pem),
        "tls.key": enc(&pair.key_pem),
    });
    if let Some(bundle) = bundle {
        data["ca-bundle.crt"] = json!(enc(bundle));
    }
    emu.put(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": data,
    }))
    .expect("seed Secret");
}

pub fn args() -> TlsArgs {
    let mut args = super::file_args("/nonexistent/tls.crt".into(), "/nonexistent/tls.key".into());
    args.manage_webhook_configurations = vec![CONFIG.into()];
    args.tls_reload_interval = Duration::from_secs(1);
    args
}

pub async fn start(emu: &Emulator, shutdown: &CancellationToken) -> (ServingTls, Registry) {
    let mut registry = Registry::default();
    let tls = ServingTls::start_with_client(&args(), &mut registry, shutdown.clone(), emu.client())
        .await
        .expect("self-managed start");
    (tls, registry)
}

pub fn b64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("base64 string"))
        .expect("valid base64")
}

pub fn secret_key(emu: &Emulator, key: &str) -> String {
    let secret = emu
        .get("secrets", NAMESPACE, SECRET)
        .expect("Secret exists");
    String::from_utf8(b64(&secret["data"][key])).expect("PEM")
}

/// The caBundle of every webhook of the configuration (PEM).
pub fn ca_bundles(emu: &Emulator) -> Vec<String> {
    ca_bundles_of(emu, VALIDATING)
}

pub fn ca_bundles_of(emu: &Emulator, kind: &str) -> Vec<String> {
    let plural = format!("{}s", kind.to_lowercase());
    let config = emu.get(&plural, "", CONFIG).expect("configuration exists");
    config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| String::from_utf8(b64(&w["clientConfig"]["caBundle"])).expect("PEM"))
        .collect()
}

pub fn serials(pem: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bundle.pem");
    super::write(&path, pem);
    guardrail_certs::inspect_pem_file(&path)
        .expect("PEM bundle")
        .into_iter()
        .map(|c: CertInfo| c.serial)
        .collect()
}

/// The API server's view: the caBundle currently in the configuration.
pub fn current_bundle(emu: &Emulator) -> Option<String> {
    let config = emu.get("validatingwebhookconfigurations", "", CONFIG)?;
    let b64 = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()?
        .to_string();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}
