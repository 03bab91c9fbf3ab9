//! Server-side apply through `kube::Client`: field managers, conflicts with
//! `FieldManagerConflict` causes, shared ownership of equal values, `force`, removal of
//! fields a manager stops applying, and per-webhook `caBundle` ownership.

mod common;

use common::{api_status, ksvc, ksvc_api, start};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_force() {
    let emu = start().await;
    let api = ksvc_api(&emu);
    let mine = ksvc("m", json!([{ "latestRevision": true, "percent": 100 }]));
    api.patch(
        "m",
        &PatchParams::apply("rollout-tool"),
        &Patch::Apply(&mine),
    )
    .await
    .expect("apply creates");

    let split = json!([{ "latestRevision": true, "percent": 10 }, { "revisionName": "m-00001", "percent": 90 }]);
    let theirs = json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": { "name": "m" }, "spec": { "traffic": split } });
    let status = api_status(
        api.patch(
            "m",
            &PatchParams::apply("guardrail"),
            &Patch::Apply(&theirs),
        )
        .await
        .expect_err("conflict"),
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let causes = status.details.expect("details").causes;
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].field.as_str()),
        ("FieldManagerConflict", ".spec.traffic")
    );
    assert!(
        causes[0].message.contains("rollout-tool"),
        "{}",
        causes[0].message
    );

    // Same value: shared ownership, no conflict.
    let same = json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": { "name": "m" }, "spec": { "traffic": [{ "latestRevision": true, "percent": 100 }] } });
    api.patch("m", &PatchParams::apply("observer"), &Patch::Apply(&same))
        .await
        .expect("co-own equal value");

    let forced = api
        .patch(
            "m",
            &PatchParams::apply("guardrail").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .expect("force");
    assert_eq!(forced.data["spec"]["traffic"][0]["percent"], json!(10));
    let owners_of_traffic: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:traffic").is_some())
        })
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(
        owners_of_traffic,
        ["guardrail"],
        "force moves ownership of spec.traffic"
    );

    // The previous owner re-applying without traffic drops nothing guardrail owns.
    let without = json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": { "name": "m", "annotations": { "a": "b" } } });
    let after = api
        .patch(
            "m",
            &PatchParams::apply("rollout-tool"),
            &Patch::Apply(&without),
        )
        .await
        .expect("re-apply");
    assert_eq!(after.data["spec"]["traffic"][0]["percent"], json!(10));
    assert!(
        after.data["spec"].get("template").is_none(),
        "fields only rollout-tool applied are removed when it stops applying them"
    );
}

#[tokio::test]
async fn ca_bundle_ownership_is_per_webhook_entry() {
    let emu = start().await;
    emu.apply_yaml(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: guardrail}\nwebhooks:\n\
         - name: pods.guardrail.dev\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  clientConfig: {service: {name: guardrail, namespace: guardrail}}\n",
    )
    .expect("seed webhook configuration");
    let api: Api<ValidatingWebhookConfiguration> = Api::all(emu.client());
    let bundle = |b: &str| json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": { "name": "guardrail" }, "webhooks": [{ "name": "pods.guardrail.dev", "clientConfig": { "caBundle": b } }] });
    let applied = api
        .patch(
            "guardrail",
            &PatchParams::apply("guardrail-certs"),
            &Patch::Apply(bundle("Y2Ex")),
        )
        .await
        .expect("apply caBundle");
    let hook = &applied.webhooks.expect("webhooks")[0];
    assert_eq!(
        hook.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
        Some(b"ca1".to_vec())
    );
    assert_eq!(
        hook.side_effects, "None",
        "the rest of the webhook entry is kept"
    );

    let status = api_status(
        api.patch(
            "guardrail",
            &PatchParams::apply("helm"),
            &Patch::Apply(bundle("b3RoZXI=")),
        )
        .await
        .expect_err("conflict"),
    );
    assert_eq!(
        status.details.expect("details").causes[0].field,
        ".webhooks[name=\"pods.guardrail.dev\"].clientConfig.caBundle"
    );
    assert!(emu
        .get("validatingwebhookconfigurations", "", "guardrail")
        .is_some());
}
