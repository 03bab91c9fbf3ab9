//! Self-managed mode within narrow RBAC: the documented minimal rules suffice, a
//! WebhookConfiguration kind the install does not use may be forbidden, and a
//! configuration no kind of which may be read is an error.

mod common;

use common::self_managed::{
    ca_bundles, ca_bundles_of, current_bundle, emulator, emulator_with, resource, secret_key,
    serials, start, MUTATING, SECRET, VALIDATING,
};
use common::NAMESPACE;
use serde_json::json;
use tokio_util::sync::CancellationToken;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kind_is_tolerated_when_the_other_kind_is_managed() {
    // An install uses one kind and grants RBAC for that kind only.
    for (used, refused) in [(MUTATING, VALIDATING), (VALIDATING, MUTATING)] {
        let emu = emulator_with(used).await;
        for verb in ["get", "list", "watch", "update", "patch"] {
            emu.faults().deny(verb, &resource(refused));
        }
        let shutdown = CancellationToken::new();
        let (_tls, registry) = start(&emu, &shutdown).await;
        assert_eq!(
            ca_bundles_of(&emu, used),
            vec![secret_key(&emu, "ca.crt")],
            "{used} gets the caBundle although {refused} is forbidden"
        );
        let text = common::metrics_text(&registry);
        assert!(
            text.contains(
                "guardrail_webhook_certificate_cabundle_updates_total{result=\"success\"} 1"
            ) && text.contains("cabundle_updates_total{result=\"error\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("guardrail_webhook_certificate_cabundle_forbidden_kinds_total")
                && !text.contains("guardrail_webhook_certificate_cabundle_forbidden_kinds_total 0"),
            "the skipped kind is counted: {text}"
        );
        let refusals = emu.audit().into_iter().filter(|e| e.code == 403).count();
        assert!(refusals > 0, "the {refused} lookup was really refused");
        shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_read_of_every_kind_is_an_error() {
    let emu = emulator().await;
    for kind in [VALIDATING, MUTATING] {
        emu.faults().deny("get", &resource(kind));
    }
    let shutdown = CancellationToken::new();
    let (_tls, registry) = start(&emu, &shutdown).await;
    let text = common::metrics_text(&registry);
    assert!(
        text.contains("guardrail_webhook_certificate_cabundle_updates_total{result=\"error\"} 1"),
        "{text}"
    );
    assert_eq!(current_bundle(&emu), None, "nothing was written");
    shutdown.cancel();
}
