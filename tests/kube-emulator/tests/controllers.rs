//! The emulated Knative and KServe controllers, driven through `kube::Client` with the
//! shared KServe rollout fixtures: revisions per template change, route status
//! resolution, and the KServe reconciler that owns (and overwrites) the predictor
//! ksvc's traffic.

mod common;

use std::path::PathBuf;

use common::{api, start};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// `../shared/fixtures/<rel>` from the workspace root.
fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Applies a rollout fixture as a user would (`kubectl apply --server-side`).
async fn apply_isvc(isvcs: &Api<DynamicObject>, rel: &str) -> DynamicObject {
    let obj = fixture(rel);
    isvcs
        .patch(
            "my-model",
            &PatchParams::apply("user").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply isvc")
}

fn traffic(obj: &Value) -> Vec<(String, i64, bool)> {
    obj.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t.get("revisionName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                t.get("percent").and_then(Value::as_i64).unwrap_or(0),
                t.get("latestRevision")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            )
        })
        .collect()
}

#[tokio::test]
async fn knative_service_creates_revisions_and_resolves_route_traffic() {
    let emu = start().await;
    let ksvcs = api(&emu, "serving.knative.dev", "v1", "Service", "services");
    let svc = json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": { "name": "m" },
        "spec": { "template": { "spec": { "containers": [{ "image": "registry.example/m@sha256:01" }] } } },
    });
    let created = ksvcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).expect("object"),
        )
        .await
        .expect("create");
    assert_eq!(
        created.data["spec"]["traffic"],
        json!([{ "latestRevision": true, "percent": 100 }]),
        "Knative defaults traffic"
    );
    let status = ksvcs.get("m").await.expect("get").data["status"].clone();
    assert_eq!(status["latestReadyRevisionName"], json!("m-00001"));
    assert_eq!(
        traffic(&status["traffic"]),
        [("m-00001".to_string(), 100, true)]
    );

    let new_image = json!({ "spec": { "template": { "spec": { "containers": [{ "image": "registry.example/m@sha256:02" }] } } } });
    ksvcs
        .patch("m", &PatchParams::default(), &Patch::Merge(&new_image))
        .await
        .expect("new template");
    let split = json!({ "spec": { "traffic": [{ "latestRevision": true, "percent": 20, "tag": "canary" }, { "revisionName": "m-00001", "percent": 80 }] } });
    ksvcs
        .patch("m", &PatchParams::default(), &Patch::Merge(&split))
        .await
        .expect("split traffic");
    let status = ksvcs.get("m").await.expect("get").data["status"].clone();
    assert_eq!(
        traffic(&status["traffic"]),
        [
            ("m-00002".to_string(), 20, true),
            ("m-00001".to_string(), 80, false)
        ]
    );
    assert_eq!(
        status["traffic"][0]["url"],
        json!("http://canary-m.default.example.com")
    );
    let revision = emu
        .get("revisions", "default", "m-00002")
        .expect("revision 2 exists");
    assert_eq!(
        revision["spec"]["containers"][0]["image"],
        json!("registry.example/m@sha256:02")
    );

    // Seeding over an existing custom resource replaces it (no resourceVersion needed).
    let mut reseeded = emu.get("ksvc", "default", "m").expect("stored");
    reseeded["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example/m@sha256:03");
    emu.put(reseeded).expect("put replaces");
    assert!(emu.get("revisions", "default", "m-00003").is_some());

    // A pinned revision that does not exist: Route and Service report it, traffic is kept.
    let missing = json!({ "spec": { "traffic": [{ "revisionName": "m-00042", "percent": 100 }] } });
    ksvcs
        .patch("m", &PatchParams::default(), &Patch::Merge(&missing))
        .await
        .expect("accepted by the webhook");
    let status = ksvcs.get("m").await.expect("get").data["status"].clone();
    let ready = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("RevisionMissing"))
    );
    assert_eq!(
        traffic(&status["traffic"]).len(),
        2,
        "last good traffic stays in status"
    );
}

#[tokio::test]
async fn kserve_canary_rollback_and_promotion_follow_the_real_reconciler() {
    let emu = start().await;
    let isvcs = api(
        &emu,
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
        "inferenceservices",
    );
    let ksvcs = api(&emu, "serving.knative.dev", "v1", "Service", "services");

    apply_isvc(&isvcs, "kserve/rollout-default.yaml").await;
    let predictor = isvcs.get("my-model").await.expect("isvc").data["status"]["components"]
        ["predictor"]
        .clone();
    assert_eq!(
        predictor["latestRolledoutRevision"],
        json!("my-model-predictor-00001")
    );
    let ksvc = ksvcs
        .get("my-model-predictor")
        .await
        .expect("KServe created the predictor ksvc");
    assert_eq!(
        ksvc.metadata.owner_references.expect("owned")[0].kind,
        "InferenceService"
    );

    apply_isvc(&isvcs, "kserve/rollout-canary.yaml").await;
    let status = isvcs.get("my-model").await.expect("isvc").data["status"].clone();
    let canary = [
        ("my-model-predictor-00002".to_string(), 10, true),
        ("my-model-predictor-00001".to_string(), 90, false),
    ];
    assert_eq!(
        traffic(&status["components"]["predictor"]["traffic"]),
        canary
    );

    // Patching the KServe-owned ksvc directly is accepted by the API, then reverted by KServe.
    let direct = json!({ "spec": { "traffic": [{ "latestRevision": true, "percent": 100 }] } });
    let answered = ksvcs
        .patch(
            "my-model-predictor",
            &PatchParams::default(),
            &Patch::Merge(&direct),
        )
        .await
        .expect("patch accepted");
    assert_eq!(
        traffic(&answered.data["spec"]["traffic"]),
        [(String::new(), 100, true)]
    );
    let ksvc = ksvcs.get("my-model-predictor").await.expect("ksvc");
    assert_eq!(
        ksvc.data["spec"]["traffic"][1]["percent"],
        json!(90),
        "KServe overwrote the direct patch"
    );
    // And a server-side apply of that traffic conflicts with KServe's manager.
    let ssa = json!({ "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": { "name": "my-model-predictor" }, "spec": { "traffic": [{ "latestRevision": true, "percent": 100 }] } });
    let err = ksvcs
        .patch(
            "my-model-predictor",
            &PatchParams::apply("guardrail"),
            &Patch::Apply(&ssa),
        )
        .await
        .expect_err("conflict");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.message.contains("\"manager\"")),
        "{err:?}"
    );

    // Rollback the KServe way: canaryTrafficPercent 0 sends everything to the previous rollout.
    apply_isvc(&isvcs, "kserve/rollout-pinned.yaml").await;
    let predictor = isvcs.get("my-model").await.expect("isvc").data["status"]["components"]
        ["predictor"]
        .clone();
    assert_eq!(
        traffic(&predictor["traffic"])[1],
        ("my-model-predictor-00001".to_string(), 100, false)
    );
    assert_eq!(
        predictor["latestRolledoutRevision"],
        json!("my-model-predictor-00001")
    );

    apply_isvc(&isvcs, "kserve/rollout-promotion.yaml").await;
    let predictor = isvcs.get("my-model").await.expect("isvc").data["status"]["components"]
        ["predictor"]
        .clone();
    assert_eq!(
        traffic(&predictor["traffic"]),
        [("my-model-predictor-00002".to_string(), 100, true)]
    );
    assert_eq!(
        predictor["latestRolledoutRevision"],
        json!("my-model-predictor-00002")
    );
    assert_eq!(
        predictor["previousRolledoutRevision"],
        json!("my-model-predictor-00001")
    );
}
