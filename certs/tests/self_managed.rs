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

use common::self_managed::{
    args, ca_bundles, current_bundle, emulator, enc, secret_key, seed_secret, serials, start,
    SECRET,
};
use common::{client_config, eventually, review, validity, NAMESPACE};
use guardrail_certs::{Authority, ServingTls};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
    seed_secret(&emu, &old_ca, &old_pair, Some(old_ca.cert_pem()));
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
    seed_secret(&emu, &ca, &expired, None);
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
            let written = current_bundle(&emu).as_deref() == Some(ca.cert_pem());
            async move { written.then_some(()) }
        },
    )
    .await;
    shutdown.cancel();
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
