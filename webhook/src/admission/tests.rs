use serde_json::{json, Value};

use super::*;
use crate::config::Config;

fn review(operation: &str, group: &str, kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "namespace": "ml",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    }))
    .expect("serialisable")
}

fn pod(image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image}]}})
}

async fn decide_default(body: &[u8]) -> Result<Decision, BadRequest> {
    decide(&Engine::new(Config::default()).expect("engine"), body).await
}

fn response(d: &Decision) -> &AdmissionResponse {
    d.review.response.as_ref().expect("response")
}

#[tokio::test]
async fn denial_echoes_uid_with_403_and_every_violation() {
    let d = decide_default(&review("CREATE", "", "Pod", pod("busybox")))
        .await
        .expect("decided");
    let r = response(&d);
    assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert!(!r.allowed);
    assert_eq!(r.result.code, 403);
    assert!(
        r.result.message.contains("Pod ml/p"),
        "{}",
        r.result.message
    );
    assert!(
        r.result.message.contains("spec.containers[0].image"),
        "{}",
        r.result.message
    );
    assert_eq!((d.kind, d.operation, d.decision), ("pod", "create", "deny"));
    let json = serde_json::to_value(&d.review).expect("json");
    assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(json["kind"], "AdmissionReview");
}

#[tokio::test]
async fn delete_and_unknown_kinds_are_allowed_untouched() {
    let d = decide_default(&review("DELETE", "", "Pod", Value::Null))
        .await
        .expect("decided");
    assert!(response(&d).allowed);
    assert_eq!(d.decision, "skip");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let d = decide_default(&review("CREATE", "", "ConfigMap", cm))
        .await
        .expect("decided");
    assert!(response(&d).allowed);
}

#[tokio::test]
async fn ephemeral_containers_subresource_is_checked_and_status_is_not() {
    let mut body: Value =
        serde_json::from_slice(&review("UPDATE", "", "Pod", pod("busybox"))).expect("json");
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let d = decide_default(&serde_json::to_vec(&body).expect("bytes"))
        .await
        .expect("decided");
    assert!(!response(&d).allowed);
    body["request"]["subResource"] = json!("status");
    let d = decide_default(&serde_json::to_vec(&body).expect("bytes"))
        .await
        .expect("decided");
    assert!(response(&d).allowed);
}

#[tokio::test]
async fn unreadable_object_is_denied_with_the_reason() {
    let object = json!({"metadata": {"name": "p"}, "spec": {"containers": "nope"}});
    let d = decide_default(&review("CREATE", "", "Pod", object))
        .await
        .expect("decided");
    let r = response(&d);
    assert!(!r.allowed);
    assert!(
        r.result.message.contains("spec.containers"),
        "{}",
        r.result.message
    );
    let d = decide_default(&review("CREATE", "", "Pod", Value::Null))
        .await
        .expect("decided");
    assert!(response(&d)
        .result
        .message
        .contains("request.object is missing"));
}

#[tokio::test]
async fn bodies_that_are_not_admission_reviews_are_bad_requests() {
    let e = decide_default(b"{not json")
        .await
        .err()
        .expect("bad request");
    assert_eq!(e.reason, "bad_json");
    let e = decide_default(br#"{"apiVersion":"v1","kind":"Pod"}"#)
        .await
        .err()
        .expect("bad request");
    assert_eq!(e.reason, "not_admission_review");
    let e = decide_default(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
        .await
        .err()
        .expect("bad request");
    assert!(e.message.contains("no request"), "{}", e.message);
    let e = decide_default(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#,
    )
    .await
    .err()
    .expect("bad request");
    assert!(e.message.contains("uid"), "{}", e.message);
}

#[tokio::test]
async fn audit_mode_allows_with_warnings() {
    let engine = Engine::new(Config::parse("mode: audit").expect("config")).expect("engine");
    let d = decide(&engine, &review("CREATE", "", "Pod", pod("busybox")))
        .await
        .expect("decided");
    let r = response(&d);
    assert!(r.allowed);
    let warnings = r.warnings.as_ref().expect("warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("[digest]"), "{warnings:?}");
    assert_eq!(d.decision, "warn");
}

#[tokio::test]
async fn namespace_comes_from_the_request_when_the_object_has_none() {
    let engine = Engine::new(Config::parse("scope: {exemptNamespaces: [ml]}").expect("config"))
        .expect("engine");
    let d = decide(&engine, &review("CREATE", "", "Pod", pod("busybox")))
        .await
        .expect("decided");
    assert!(response(&d).allowed);
    assert_eq!(d.decision, "skip");
}

#[tokio::test]
async fn an_object_cannot_claim_an_exempt_namespace_the_request_is_not_in() {
    // The API server rejects a mismatch before admission today; we must not depend on it.
    let mut object = pod("busybox");
    object["metadata"]["namespace"] = json!("kube-system");
    let d = decide_default(&review("CREATE", "", "Pod", object))
        .await
        .expect("decided");
    assert!(!response(&d).allowed, "judged in ml, not kube-system");
    assert!(response(&d).result.message.contains("Pod ml/p"));
}

#[tokio::test]
async fn older_api_versions_and_dry_runs_are_judged_the_same() {
    let deployment = json!({"apiVersion": "apps/v1beta2", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let cron = json!({"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    for (group, kind, version, object) in [
        ("apps", "Deployment", "v1beta2", deployment),
        ("batch", "CronJob", "v1beta1", cron),
    ] {
        let mut body: Value =
            serde_json::from_slice(&review("CREATE", group, kind, object)).expect("json");
        body["request"]["kind"]["version"] = json!(version);
        body["request"]["dryRun"] = json!(true);
        let d = decide_default(&serde_json::to_vec(&body).expect("bytes"))
            .await
            .expect("decided");
        assert!(!response(&d).allowed, "{group}/{version} {kind}");
    }
}

#[tokio::test]
async fn update_denies_only_what_the_change_introduces() {
    let mut body: Value =
        serde_json::from_slice(&review("UPDATE", "", "Pod", pod("busybox:1.36"))).expect("json");
    body["request"]["oldObject"] = pod("busybox:1.36");
    let d = decide_default(&serde_json::to_vec(&body).expect("bytes"))
        .await
        .expect("decided");
    let r = response(&d);
    assert!(
        r.allowed,
        "a pre-existing violation must not block an update"
    );
    assert_eq!(r.warnings.as_ref().map(Vec::len), Some(1));

    body["request"]["object"] = pod("busybox:1.37");
    let d = decide_default(&serde_json::to_vec(&body).expect("bytes"))
        .await
        .expect("decided");
    assert!(!response(&d).allowed, "a new unpinned image must be denied");
}

/// An image policy that only finishes once two evaluations are in flight at once, and
/// reports one warning per image.
struct Rendezvous(tokio::sync::Barrier);

impl crate::policy::ImagePolicy for Rendezvous {
    fn name(&self) -> PolicyName {
        PolicyName::Signatures
    }

    fn check<'a>(
        &'a self,
        images: &'a [crate::workload::ImageUse],
    ) -> futures::future::BoxFuture<'a, crate::policy::ImageFindings> {
        Box::pin(async move {
            self.0.wait().await;
            crate::policy::ImageFindings {
                violations: Vec::new(),
                warnings: images
                    .iter()
                    .map(|i| crate::policy::Violation {
                        policy: PolicyName::Signatures,
                        container: Some(i.container.clone()),
                        field: i.field.clone(),
                        message: format!("{} allowed unverified", i.image.raw()),
                        hint: String::new(),
                    })
                    .collect(),
                unverifiable: false,
            }
        })
    }
}

#[tokio::test]
async fn update_judges_old_and_new_concurrently_and_returns_policy_warnings() {
    let digest = format!("busybox@sha256:{}", "ab".repeat(32));
    let mut body: Value =
        serde_json::from_slice(&review("UPDATE", "", "Pod", pod(&digest))).expect("json");
    body["request"]["oldObject"] = pod(&digest);
    let engine = Engine::new(Config::default())
        .expect("engine")
        .with_image_policy(std::sync::Arc::new(Rendezvous(tokio::sync::Barrier::new(
            2,
        ))));
    // Sequential evaluation would wait forever at the barrier; the bound only turns
    // that bug into a failure instead of a hang.
    let d = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        decide(&engine, &serde_json::to_vec(&body).expect("bytes")),
    )
    .await
    .expect("old and new objects must be judged concurrently")
    .expect("decided");
    let r = response(&d);
    assert!(r.allowed);
    assert_eq!(d.decision, "warn");
    let warnings = r.warnings.clone().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("allowed unverified"), "{warnings:?}");
}
