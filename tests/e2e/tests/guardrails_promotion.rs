//! Staged promotion end to end, for a plain Knative Service and for a KServe-owned one
//! (where the InferenceService is patched and the Knative Service left to KServe).

mod guardrails_support;

use std::{path::PathBuf, time::Duration};

use guardrail_e2e::process::eventually;
use guardrails_support::{
    load, metric, traffic_of, BackgroundLoad, Cluster, Mode, Sidecar, Upstream, NS, TEST_CONFIG,
    WAIT,
};
use kube::{
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
};
use serde_json::{json, Value};

/// A cluster with `m-00002` at the first of the steps 5, 25, 50, 100 (1 s each, at
/// least 10 requests), and a healthy upstream.
async fn walking_canary() -> (Cluster, Upstream) {
    let cluster = Cluster::start().await;
    cluster.seed_canary(
        "m",
        5,
        json!({
            "guardrail.dev/steps": "5,25,50,100",
            "guardrail.dev/step-duration": "1s",
            "guardrail.dev/min-requests": "10",
        }),
    );
    (cluster, Upstream::start(Mode::Healthy).await)
}

#[tokio::test]
async fn healthy_canary_walks_5_25_50_100_and_the_old_revision_stays_tagged_previous() {
    let (cluster, upstream) = walking_canary().await;
    let canary = Sidecar::start(&cluster, &upstream, "m", "m-00002", TEST_CONFIG, &[]);
    canary.wait_ready(5.0).await;
    let _load = BackgroundLoad::start(canary.url(), Duration::from_millis(10));
    eventually("the canary is fully promoted", WAIT, || async {
        (cluster.traffic("m")
            == [
                ("m-00001".to_string(), 0, "previous".to_string()),
                ("m-00002".to_string(), 100, String::new()),
            ])
        .then_some(())
    })
    .await;
    // The audit log shows the walk: the first step's start, then one write per step.
    let shares: Vec<Option<i64>> = cluster
        .guardrail_writes("/services/m")
        .iter()
        .map(|w| {
            let body = w.body_json().expect("JSON patch body");
            body["spec"]["traffic"]
                .as_array()
                .and_then(|t| t.iter().find(|e| e["revisionName"] == json!("m-00002")))
                .and_then(|e| e["percent"].as_i64())
        })
        .collect();
    assert_eq!(shares, [None, Some(25), Some(50), Some(100)]);
    let a = cluster.service("m")["metadata"]["annotations"].clone();
    assert_eq!(a["guardrail.dev/promoted-revision"], json!("m-00002"));
    assert!(a.get("guardrail.dev/step-started").is_none());
    let reasons: Vec<Value> = cluster
        .events_for("m")
        .iter()
        .map(|e| e["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("CanaryPromoted")), "{reasons:?}");
}

#[tokio::test]
async fn a_canary_breaking_mid_walk_is_rolled_back_and_never_promoted_again() {
    let (cluster, upstream) = walking_canary().await;
    let config = format!("{TEST_CONFIG}window: {{ length: 2s, subWindows: 4 }}\n");
    let canary = Sidecar::start(&cluster, &upstream, "m", "m-00002", &config, &[]);
    canary.wait_ready(5.0).await;
    let _load = BackgroundLoad::start(canary.url(), Duration::from_millis(10));
    eventually("the canary reaches 25%", WAIT, || async {
        (cluster.traffic("m")[1].1 == 25).then_some(())
    })
    .await;
    upstream.set(Mode::Failing);
    eventually("the rollback wins", WAIT, || async {
        (cluster.traffic("m")
            == [
                ("m-00001".to_string(), 100, "previous".to_string()),
                ("m-00002".to_string(), 0, "canary".to_string()),
            ])
        .then_some(())
    })
    .await;
    // Healthy again (the short window forgets the failures), and the operator puts
    // it back at 25%: the quarantine holds.
    upstream.set(Mode::Healthy);
    eventually("the failures aged out of the window", WAIT, || async {
        let m = canary.metrics().await;
        (metric(&m, "guardrail_window_error_ratio", "") == 0.0
            && metric(&m, "guardrail_window_requests", "") >= 10.0)
            .then_some(())
    })
    .await;
    let mut svc = cluster.service("m");
    svc["spec"]["traffic"] = json!([
        { "revisionName": "m-00001", "percent": 75, "tag": "previous" },
        { "revisionName": "m-00002", "percent": 25 },
    ]);
    cluster.emu.put(svc).expect("operator edit");
    let writes = cluster.guardrail_writes("/services/m").len();
    canary.wait_ready(25.0).await;
    let seen = healthy(&canary).await;
    eventually("healthy evaluations at 25% again", WAIT, || async {
        (healthy(&canary).await >= seen + 3.0).then_some(())
    })
    .await;
    let after: Vec<_> = cluster.guardrail_writes("/services/m")[writes..]
        .iter()
        .map(|w| w.body.clone())
        .collect();
    assert!(
        after.is_empty(),
        "no write for a quarantined revision: {after:?}"
    );
    assert_eq!(cluster.traffic("m")[1].1, 25);
}

async fn healthy(sidecar: &Sidecar) -> f64 {
    sidecar
        .metric("guardrail_evaluations_total", "verdict=\"healthy\"")
        .await
}

fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn isvcs(cluster: &Cluster) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    );
    Api::namespaced_with(cluster.emu.client(), NS, &ar)
}

/// `my-model` rolled out, then a canary at 10% with `annotations`, as a user applies it.
async fn kserve_canary(cluster: &Cluster, annotations: Value) {
    let api = isvcs(cluster);
    for rel in ["kserve/rollout-default.yaml", "kserve/rollout-canary.yaml"] {
        let mut obj = fixture(rel);
        obj["metadata"]["annotations"] = annotations.clone();
        api.patch(
            "my-model",
            &PatchParams::apply("user").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply the InferenceService");
    }
    let isvc = cluster.emu.get("isvc", NS, "my-model").expect("isvc");
    assert_eq!(
        isvc["status"]["components"]["predictor"]["latestRolledoutRevision"],
        json!("my-model-predictor-00001")
    );
}

/// [`kserve_canary`] with `annotations`, a healthy upstream and a ready sidecar of the
/// canary predictor revision.
async fn kserve_sidecar(annotations: Value) -> (Cluster, Upstream, Sidecar) {
    let cluster = Cluster::start().await;
    kserve_canary(&cluster, annotations).await;
    let upstream = Upstream::start(Mode::Healthy).await;
    let sidecar = Sidecar::start(
        &cluster,
        &upstream,
        "my-model-predictor",
        "my-model-predictor-00002",
        TEST_CONFIG,
        &[],
    );
    sidecar.wait_ready(10.0).await;
    (cluster, upstream, sidecar)
}

#[tokio::test]
async fn kserve_canary_is_rolled_back_through_the_inference_service() {
    let (cluster, upstream, sidecar) = kserve_sidecar(json!({})).await;
    upstream.set(Mode::Failing);
    load(&reqwest::Client::new(), &sidecar.url(), 50).await;
    eventually("canaryTrafficPercent is 0", WAIT, || async {
        let isvc = cluster.emu.get("isvc", NS, "my-model")?;
        (isvc["spec"]["predictor"]["canaryTrafficPercent"] == json!(0)).then_some(())
    })
    .await;
    assert!(
        cluster.guardrail_writes("/services/").is_empty(),
        "the Knative Service is KServe's"
    );
    assert_eq!(
        cluster
            .guardrail_writes("/inferenceservices/my-model")
            .len(),
        1
    );
    let isvc = cluster.emu.get("isvc", NS, "my-model").expect("isvc");
    assert_eq!(
        isvc["metadata"]["annotations"]["guardrail.dev/rolled-back-revision"],
        json!("my-model-predictor-00002")
    );
    // KServe's reconciler moved the predictor's traffic back.
    let ksvc = cluster.service("my-model-predictor");
    assert_eq!(
        traffic_of(&ksvc["spec"]["traffic"]),
        [
            ("@latest".to_string(), 0, "latest".to_string()),
            (
                "my-model-predictor-00001".to_string(),
                100,
                "prev".to_string()
            ),
        ]
    );
    eventually(
        "the rollback Event on the InferenceService",
        WAIT,
        || async {
            let events = cluster.events_for("my-model");
            events
                .iter()
                .any(|e| e["reason"] == json!("CanaryRolledBack"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn kserve_canary_is_promoted_through_canary_traffic_percent() {
    let (cluster, _upstream, sidecar) = kserve_sidecar(json!({
        "guardrail.dev/steps": "10,50,100",
        "guardrail.dev/step-duration": "1s",
        "guardrail.dev/min-requests": "10",
    }))
    .await;
    let _load = BackgroundLoad::start(sidecar.url(), Duration::from_millis(10));
    eventually("the canary is rolled out", WAIT, || async {
        let isvc = cluster.emu.get("isvc", NS, "my-model")?;
        (isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
            == json!("my-model-predictor-00002"))
        .then_some(())
    })
    .await;
    let isvc = cluster.emu.get("isvc", NS, "my-model").expect("isvc");
    assert!(isvc["spec"]["predictor"]
        .get("canaryTrafficPercent")
        .is_none());
    let shares: Vec<Value> = cluster
        .guardrail_writes("/inferenceservices/my-model")
        .iter()
        .map(|w| w.body_json().expect("JSON")["spec"]["predictor"]["canaryTrafficPercent"].clone())
        .collect();
    // Step record (no spec), 50%, then removal (null).
    assert_eq!(shares, [Value::Null, json!(50), Value::Null]);
    assert!(cluster.guardrail_writes("/services/").is_empty());
}
