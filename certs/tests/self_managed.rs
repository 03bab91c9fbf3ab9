//! Self-managed mode against the Kubernetes API emulator (TLS, bearer token,
//! resourceVersion conflicts): the Secret is created once even when two instances
//! start together, the caBundle is written, and CA rotation keeps the old CA in the
//! bundle.

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use base64::Engine as _;
use common::{client_config, eventually, review, validity, NAMESPACE, SERVICE};
use guardrail_certs::{Authority, CertInfo, ServingTls, TlsArgs};
use kube_emulator::{Emulator, Options};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "guardrail-webhook-tls";
const CONFIG: &str = "guardrail";

async fn emulator() -> Emulator {
    let mut options = Options::default();
    options.namespaces.push(NAMESPACE.to_string());
    let emu = Emulator::start(options).await.expect("emulator");
    emu.put(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIG},
        "webhooks": [{
            "name": "pods.guardrail.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": SERVICE, "namespace": NAMESPACE, "path": "/validate"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
        }],
    }))
    .expect("seed ValidatingWebhookConfiguration");
    emu
}

fn args() -> TlsArgs {
    let mut args = TlsArgs::files("/nonexistent/tls.crt", "/nonexistent/tls.key");
    args.service_name = Some(SERVICE.into());
    args.service_namespace = Some(NAMESPACE.into());
    args.manage_webhook_configurations = vec![CONFIG.into()];
    args.tls_reload_interval = Duration::from_secs(1);
    args
}

async fn start(emu: &Emulator, shutdown: &CancellationToken) -> (ServingTls, Registry) {
    let mut registry = Registry::default();
    let tls = ServingTls::start_with_client(&args(), &mut registry, shutdown.clone(), emu.client())
        .await
        .expect("self-managed start");
    (tls, registry)
}

fn b64(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn secret_key(emu: &Emulator, key: &str) -> String {
    let secret = emu
        .get("secrets", NAMESPACE, SECRET)
        .expect("Secret exists");
    String::from_utf8(b64(&secret["data"][key])).expect("PEM")
}

/// The caBundle of every webhook of the configuration (PEM).
fn ca_bundles(emu: &Emulator) -> Vec<String> {
    let config = emu
        .get("validatingwebhookconfigurations", "", CONFIG)
        .expect("configuration exists");
    config["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| String::from_utf8(b64(&w["clientConfig"]["caBundle"])).expect("PEM"))
        .collect()
}

fn serials(pem: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bundle.pem");
    common::write(&path, pem);
    guardrail_certs::inspect_pem_file(&path)
        .expect("PEM bundle")
        .into_iter()
        .map(|c: CertInfo| c.serial)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_create_the_secret_once_and_write_the_ca_bundle() {
    let emu = emulator().await;
    // Writes racing with another client: the first two writes answer 409.
    emu.faults().conflicts(2);
    let shutdown = CancellationToken::new();
    let ((a, _), (b, _)) = tokio::join!(start(&emu, &shutdown), start(&emu, &shutdown));

    let creates: Vec<_> = emu
        .audit()
        .into_iter()
        .filter(|e| e.verb == "create" && e.path.ends_with("/secrets") && e.code == 201)
        .collect();
    assert_eq!(creates.len(), 1, "the Secret must be created exactly once");
    assert_eq!(
        a.serving_certificate().serial,
        b.serving_certificate().serial,
        "both replicas serve the Secret's certificate"
    );
    assert_eq!(
        serials(&secret_key(&emu, "tls.crt")),
        vec![a.serving_certificate().serial]
    );

    let bundles = ca_bundles(&emu);
    assert_eq!(bundles, vec![secret_key(&emu, "ca.crt")]);
    // The API server, trusting exactly the caBundle, can call the webhook.
    let addr = common::serve(a.server_config()).await;
    review(addr, client_config(&[&bundles[0]], None), "uid-1")
        .await
        .expect("the caBundle verifies the served certificate");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_ca_is_rotated_with_both_cas_in_the_bundle() {
    let emu = emulator().await;
    // What an earlier replica stored: a CA with 10 days left (renewal is at 30).
    let old_ca = Authority::new("old guardrail CA", validity(-300, 10)).expect("old CA");
    let old_pair = old_ca
        .issue_serving(&common::names(), validity(-1, 9))
        .expect("old pair");
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    emu.put(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": enc(old_ca.cert_pem()),
            "ca.key": enc(old_ca.key_pem()),
            "tls.crt": enc(&old_pair.cert_pem),
            "tls.key": enc(&old_pair.key_pem),
            "ca-bundle.crt": enc(old_ca.cert_pem()),
        },
    }))
    .expect("seed Secret");
    let old_ca_serial = serials(old_ca.cert_pem())[0].clone();

    let shutdown = CancellationToken::new();
    let (tls, registry) = start(&emu, &shutdown).await;
    let new_ca = secret_key(&emu, "ca.crt");
    let new_ca_serial = serials(&new_ca)[0].clone();
    assert_ne!(new_ca_serial, old_ca_serial, "the CA was rotated");
    let bundle = secret_key(&emu, "ca-bundle.crt");
    assert_eq!(serials(&bundle), vec![new_ca_serial, old_ca_serial.clone()]);
    assert_eq!(ca_bundles(&emu), vec![bundle.clone()]);
    assert_ne!(
        tls.serving_certificate().serial,
        serials(&old_pair.cert_pem)[0]
    );

    // An API server that already has the new bundle is served; so is one trusting
    // only the new CA.
    let addr = common::serve(tls.server_config()).await;
    review(addr, client_config(&[&bundle], None), "with-bundle")
        .await
        .expect("served with both CAs trusted");
    review(addr, client_config(&[&new_ca], None), "new-ca-only")
        .await
        .expect("served with the new CA trusted");
    let text = common::metrics_text(&registry);
    assert!(
        text.contains("guardrail_webhook_certificate_renewals_total{result=\"success\"} 1"),
        "{text}"
    );

    // Later, the serving certificate nears its end (as if months passed): the running
    // instance renews it from the same CA, and the bundle keeps both CAs.
    let short = Authority::from_pem(&new_ca, &secret_key(&emu, "ca.key"), "test")
        .expect("stored CA")
        .issue_serving(&common::names(), validity(-1, 5))
        .expect("short pair");
    let mut secret = emu.get("secrets", NAMESPACE, SECRET).expect("Secret");
    secret["data"]["tls.crt"] = json!(enc(&short.cert_pem));
    secret["data"]["tls.key"] = json!(enc(&short.key_pem));
    emu.put(secret).expect("age the serving certificate");
    let short_serial = serials(&short.cert_pem)[0].clone();
    let client = client_config(&[&bundle], None);
    let renewed = eventually(
        "the running instance to renew",
        Duration::from_secs(20),
        || {
            let (client, short_serial) = (client.clone(), short_serial.clone());
            let stored = serials(&secret_key(&emu, "tls.crt"))[0].clone();
            async move {
                let seen = review(addr, client, "after-renewal").await.ok()?;
                (seen == stored && seen != short_serial).then_some(seen)
            }
        },
    )
    .await;
    assert_eq!(serials(&secret_key(&emu, "ca.crt"))[0], serials(&new_ca)[0]);
    let unique: BTreeSet<_> = serials(&secret_key(&emu, "ca-bundle.crt"))
        .into_iter()
        .collect();
    assert_eq!(unique.len(), 2, "both CAs stay in the bundle");
    assert_eq!(tls.serving_certificate().serial, renewed);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_serving_certificate_is_reissued_from_the_stored_ca() {
    let emu = emulator().await;
    let ca = Authority::new("stored guardrail CA", validity(-10, 300)).expect("CA");
    let expired = ca
        .issue_serving(&common::names(), validity(-10, -1))
        .expect("expired pair");
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    emu.put(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": enc(ca.cert_pem()),
            "ca.key": enc(ca.key_pem()),
            "tls.crt": enc(&expired.cert_pem),
            "tls.key": enc(&expired.key_pem),
        },
    }))
    .expect("seed Secret");
    // The configuration's caBundle update is refused at first (RBAC missing); start-up
    // still serves, and the update goes through once allowed.
    emu.faults().deny(
        "update",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
    );
    let shutdown = CancellationToken::new();
    let (tls, registry) = start(&emu, &shutdown).await;
    assert_eq!(
        serials(&secret_key(&emu, "ca.crt")),
        serials(ca.cert_pem()),
        "CA kept"
    );
    assert_eq!(
        serials(&secret_key(&emu, "ca-bundle.crt")),
        serials(ca.cert_pem())
    );
    assert_ne!(
        tls.serving_certificate().serial,
        serials(&expired.cert_pem)[0]
    );
    let text = common::metrics_text(&registry);
    assert!(
        text.contains("guardrail_webhook_certificate_cabundle_updates_total{result=\"error\"} 1"),
        "{text}"
    );
    emu.faults().clear();
    eventually(
        "the caBundle to be written",
        Duration::from_secs(20),
        || {
            let bundles = emu
                .get("validatingwebhookconfigurations", "", CONFIG)
                .map(|c| c["webhooks"][0]["clientConfig"]["caBundle"].clone());
            let want = ca.cert_pem().to_string();
            async move {
                let bundle = bundles?;
                (bundle.is_string() && String::from_utf8(b64(&bundle)).ok()? == want).then_some(())
            }
        },
    )
    .await;
    shutdown.cancel();
}

/// The API server's view: the caBundle currently in the configuration.
fn current_bundle(emu: &Emulator) -> Option<String> {
    let config = emu.get("validatingwebhookconfigurations", "", CONFIG)?;
    let b64 = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()?
        .to_string();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_by_another_replica_fails_no_call() {
    let emu = Arc::new(emulator().await);
    let shutdown = CancellationToken::new();
    // Replica 1 makes a CA with 40 days to live, outside its 30-day renewal window.
    let mut first = args();
    (first.ca_days, first.cert_days, first.renew_before_days) = (40, 35, 30);
    let mut registry = Registry::default();
    let one = ServingTls::start_with_client(&first, &mut registry, shutdown.clone(), emu.client())
        .await
        .expect("replica 1");
    let old_ca = serials(&secret_key(&emu, "ca.crt"))[0].clone();
    let addr = common::serve(one.server_config()).await;

    // Calls that trust exactly what the configuration says at that moment.
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (stop, emu) = (stop.clone(), emu.clone());
        tokio::spawn(async move {
            let (mut calls, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let Some(bundle) = current_bundle(&emu) else {
                    failures.push("no caBundle".to_string());
                    continue;
                };
                calls += 1;
                if let Err(e) = review(addr, client_config(&[&bundle], None), "call").await {
                    failures.push(e);
                }
            }
            (calls, failures)
        })
    };

    // Replica 2 has a wider renewal window, so to it the CA is due: it rotates.
    let mut second = args();
    (second.ca_days, second.cert_days, second.renew_before_days) = (60, 50, 45);
    let mut registry2 = Registry::default();
    let two =
        ServingTls::start_with_client(&second, &mut registry2, shutdown.clone(), emu.client())
            .await
            .expect("replica 2");
    let new_ca = serials(&secret_key(&emu, "ca.crt"))[0].clone();
    assert_ne!(new_ca, old_ca, "replica 2 rotated the CA");
    assert_eq!(
        serials(&secret_key(&emu, "ca-bundle.crt")),
        vec![new_ca, old_ca]
    );

    // Replica 1 follows the Secret within a few rounds and serves the new certificate.
    let stored = serials(&secret_key(&emu, "tls.crt"))[0].clone();
    assert_eq!(two.serving_certificate().serial, stored);
    eventually("replica 1 to switch", Duration::from_secs(20), || {
        let switched = one.serving_certificate().serial == stored;
        async move { switched.then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (calls, failures) = task.await.expect("caller");
    assert!(calls > 0);
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_minimal_rbac_is_enough_with_a_precreated_secret() {
    let emu = emulator().await;
    emu.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
    }))
    .expect("empty Secret made by the chart");
    // Only get/update on the Secret and the configurations (docs/certs.md, without
    // the optional create rule).
    let configs = "validatingwebhookconfigurations.admissionregistration.k8s.io";
    for verb in ["create", "patch", "delete", "list", "watch"] {
        emu.faults().deny(verb, "secrets").deny(verb, configs);
    }
    let shutdown = CancellationToken::new();
    let (tls, _registry) = start(&emu, &shutdown).await;
    assert_eq!(
        serials(&secret_key(&emu, "tls.crt")),
        vec![tls.serving_certificate().serial]
    );
    assert_eq!(ca_bundles(&emu), vec![secret_key(&emu, "ca.crt")]);
    let denied = emu.audit().into_iter().filter(|e| e.code == 403).count();
    assert_eq!(
        denied, 0,
        "self-managed mode used a verb outside the documented RBAC"
    );
    shutdown.cancel();
}
