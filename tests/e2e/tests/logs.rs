//! Structured logs, parsed from the real binaries' stderr: with `--log-format json`
//! every line is one JSON object; the webhook's admission lines carry the review's
//! uid, kind, namespace, name and decision; the sidecar's access log carries the
//! request id (generated when absent) and the W3C trace id, and `traceparent` reaches
//! the model untouched.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use guardrail_e2e::{
    process::eventually,
    sidecar::{upstream, SidecarProcess},
    webhook::{admission_review, manifest, Webhook},
};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::{json, Value};

/// Every line of `text` as JSON; panics on a line that is not one object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(
                v.is_object() && v["timestamp"].is_string() && v["level"].is_string(),
                "{l}"
            );
            v
        })
        .collect()
}

#[tokio::test]
async fn the_sidecar_access_log_carries_request_and_trace_ids() {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let up = upstream(move |req| {
        // Both W3C trace context headers, as the model received them.
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let context = header("traceparent")
            .map(|p| format!("{p} {}", header("tracestate").unwrap_or_default()));
        record.lock().expect("lock").push(context);
        async {
            Response::new(
                Full::new(Bytes::from_static(br#"{"predictions":[0.5]}"#))
                    .map_err(|never| match never {})
                    .boxed(),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (sidecar, log) = SidecarProcess::start_logged(
        &format!("http://{up}"),
        "m-00002",
        "",
        dir.path(),
        &["--log-format", "json", "--access-log"],
    );
    let client = reqwest::Client::new();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client
        .post(sidecar.url("/v1/models/m:predict"))
        .header("x-request-id", "req-42")
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=abc")
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let r = client
        .get(sidecar.url("/missing"))
        .send()
        .await
        .expect("answer");
    let generated = r.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    let _ = r.bytes().await;
    // Passed through untouched.
    assert_eq!(
        seen.lock().expect("lock")[0].as_deref(),
        Some(format!("{traceparent} vendor=abc").as_str())
    );
    let lines = eventually("two access lines", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines = json_lines(&text);
        let access: Vec<Value> = lines
            .into_iter()
            .filter(|l| l["target"] == "access")
            .collect();
        (access.len() >= 2).then_some(access)
    })
    .await;
    let first = &lines[0];
    assert_eq!(first["request_id"], "req-42", "{first}");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        (
            &first["method"],
            &first["path"],
            &first["status"],
            &first["revision"]
        ),
        (
            &json!("POST"),
            &json!("/v1/models/m:predict"),
            &json!(200),
            &json!("m-00002")
        )
    );
    assert!(
        first["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{first}"
    );
    let second = &lines[1];
    assert_eq!(second["request_id"], json!(generated), "{second}");
    assert_eq!(second["trace_id"], "");
}

#[tokio::test]
async fn webhook_admission_lines_name_the_review_they_are_about() {
    let webhook = Webhook::start(&["--log-format", "json"]);
    let client = webhook.client();
    let object = &manifest("examples/bad/deployment-unpinned.yaml")[0];
    let (status, _) = webhook
        .validate(&client, &admission_review("uid-logs", "CREATE", object))
        .await;
    assert_eq!(status, 200);
    webhook
        .wait_for_log("admission decided", Duration::from_secs(10))
        .await;
    let text = webhook.log_lines().join("\n");
    let lines = json_lines(&text);
    let decided = lines
        .iter()
        .find(|l| l["message"] == "admission decided")
        .expect("the decision line");
    let span = &decided["span"];
    assert_eq!(span["uid"], "uid-logs", "{decided}");
    assert_eq!(span["kind"], "Deployment");
    assert_eq!(
        span["namespace"],
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    );
    assert_eq!(span["object"], object["metadata"]["name"]);
    assert_eq!(span["decision"], "deny");
}
