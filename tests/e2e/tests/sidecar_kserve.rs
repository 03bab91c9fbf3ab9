//! The real KServe model server (V1 and V2) behind the real sidecar: misbehaviour is
//! switched at run time and the sidecar's figures, metrics and sanity counts are
//! asserted exactly.

use std::time::Duration;

use guardrail_e2e::{
    kserve::{ModelServer, MODEL},
    process::eventually,
    sidecar::{sample, SidecarProcess},
};
use serde_json::{json, Value};

const CONFIG: &str = "window: { length: 10m, subWindows: 10 }\nsanity: { probabilities: true, expectedOutputs: [probs] }\n";

struct Client {
    http: reqwest::Client,
    v1: String,
    v2: String,
}

impl Client {
    async fn v1(&self) -> u16 {
        let body = json!({ "instances": [[1.0, 2.0], [-1.0, -3.0]] });
        Self::finish(
            self.http
                .post(&self.v1)
                .json(&body)
                .send()
                .await
                .expect("V1 request"),
        )
        .await
    }

    async fn v2(&self) -> u16 {
        let body = json!({ "inputs": [{ "name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, -1.0, -3.0] }] });
        Self::finish(
            self.http
                .post(&self.v2)
                .json(&body)
                .send()
                .await
                .expect("V2 request"),
        )
        .await
    }

    /// Reads the whole body (a client that hangs up early leaves the output unchecked).
    async fn finish(r: reqwest::Response) -> u16 {
        let status = r.status().as_u16();
        r.bytes().await.expect("response body");
        status
    }
}

#[tokio::test]
async fn kserve_v1_and_v2_misbehaviour_is_measured_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = ModelServer::start(dir.path()).await;
    let sidecar = SidecarProcess::start(&model.url(), "iris-00002", CONFIG, dir.path());
    let c = Client {
        http: reqwest::Client::new(),
        v1: sidecar.url(&format!("/v1/models/{MODEL}:predict")),
        v2: sidecar.url(&format!("/v2/models/{MODEL}/infer")),
    };

    // Healthy: 3 V1 + 3 V2, all checked, none failing.
    for _ in 0..3 {
        assert_eq!(c.v1().await, 200);
        assert_eq!(c.v2().await, 200);
    }
    // Each misbehaviour once per protocol; KServe answers 200 with a bad body.
    for mode in ["nan", "empty", "wrong_shape"] {
        model.set_mode(mode);
        assert_eq!(c.v1().await, 200, "{mode} V1");
        assert_eq!(c.v2().await, 200, "{mode} V2");
    }
    // The model raising is a 500: an error, not a sanity failure.
    model.set_mode("error500");
    assert_eq!(c.v1().await, 500);
    assert_eq!(c.v2().await, 500);
    // Slowness shows in the latency figures.
    model.set_mode("slow:300");
    assert_eq!(c.v1().await, 200);
    assert_eq!(c.v2().await, 200);
    // A client error (KServe refuses a non-JSON V2 body with 400) is neither.
    model.set_mode("ok");
    let r = c
        .http
        .post(&c.v2)
        .body("not json")
        .send()
        .await
        .expect("bad request");
    assert_eq!(r.status(), 400);

    let g: Value = eventually(
        "all 17 requests in the window",
        Duration::from_secs(10),
        || async {
            let g = sidecar.guardrails().await;
            (g["window"]["requests"] == 17).then_some(g)
        },
    )
    .await;
    let w = &g["window"];
    assert_eq!(g["identity"]["revision"], "iris-00002");
    assert_eq!(w["errors"], 2, "{w}");
    assert_eq!(w["sanity_checked"], 14, "{w}");
    let m = sidecar.metrics().await;
    assert_eq!(w["sanity_failures"], 6, "{w}\n{m}");
    assert_eq!(w["sanity_unchecked"], 0, "{w}");
    let ratio = w["sanity_failure_ratio"].as_f64().expect("ratio");
    assert!((ratio - 6.0 / 14.0).abs() < 1e-9, "{w}");
    let error_ratio = w["error_ratio"].as_f64().expect("ratio");
    assert!((error_ratio - 2.0 / 17.0).abs() < 1e-9, "{w}");
    // Two of 17 requests slept 300 ms: p99 (and p95) include them, p50 does not.
    let p99 = w["latency_p99_seconds"].as_f64().expect("p99");
    let p50 = w["latency_p50_seconds"].as_f64().expect("p50");
    assert!(
        p99 >= 0.3 * 0.99,
        "p99 {p99} must include the slow requests"
    );
    assert!(p50 < 0.3, "p50 {p50} must not");

    let rev = r#"revision="iris-00002""#;
    let count = |labels: &str| sample(&m, &format!("guardrail_{labels}")).unwrap_or(0.0);
    assert_eq!(
        count(&format!(r#"requests_total{{{rev},class="2xx"}}"#)),
        14.0
    );
    assert_eq!(
        count(&format!(r#"requests_total{{{rev},class="4xx"}}"#)),
        1.0
    );
    assert_eq!(
        count(&format!(r#"requests_total{{{rev},class="5xx"}}"#)),
        2.0
    );
    assert_eq!(count(&format!("request_errors_total{{{rev}}}")), 2.0);
    assert_eq!(count(&format!("sanity_checked_total{{{rev}}}")), 14.0);
    for (check, n) in [
        // V1 NaN is written as null by KServe; V2 NaN as null in FP32 data.
        ("non_finite", 2.0),
        // The V1 row holding the null cannot sum to 1.
        ("probability", 1.0),
        ("empty_predictions", 1.0),
        // No outputs at all: reported once, not also as each expected name missing.
        ("missing_outputs", 1.0),
        ("missing_output", 0.0),
        ("prediction_count", 1.0),
        ("shape_mismatch", 1.0),
    ] {
        assert_eq!(
            count(&format!(
                r#"sanity_failures_total{{{rev},check="{check}"}}"#
            )),
            n,
            "check {check}\n{m}"
        );
    }
    assert_eq!(count(&format!("window_requests{{{rev}}}")), 17.0);
    assert_eq!(
        count(&format!("request_duration_seconds_count{{{rev}}}")),
        17.0
    );
}
