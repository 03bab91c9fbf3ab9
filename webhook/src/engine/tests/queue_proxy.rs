//! Knative's queue-proxy: the exemption it gets in pods Knative built must not be
//! claimable by anyone who can label a Pod and name a container `queue-proxy`.

use serde_json::{json, Value};

use super::*;

fn knative_pod() -> Value {
    objects(&repo_file("webhook/tests/data/knative-revision-pod.yaml")).remove(0)
}

fn set_queue_image(pod: &mut Value, image: &str) {
    pod["spec"]["containers"][1]["image"] = json!(image);
}

/// Findings about the queue-proxy container.
fn about_queue_proxy(verdict: &Verdict) -> Vec<(PolicyName, String, bool)> {
    let only: Vec<Finding> = (verdict.findings.iter())
        .filter(|f| f.violation.container.as_deref() == Some("queue-proxy"))
        .cloned()
        .collect();
    found(&Verdict::judged(only, Vec::new()))
}

#[tokio::test]
async fn a_queue_proxy_with_a_foreign_image_gets_no_exemption() {
    let mut pod = knative_pod();
    set_queue_image(&mut pod, &format!("docker.io/attacker/miner@{DIGEST}"));
    let verdict = judge(&pod).await;
    assert!(!verdict.allowed(), "{verdict:?}");
    // Judged as any serving container: it has no liveness probe…
    assert!(
        about_queue_proxy(&verdict).contains(&(PolicyName::Probes, "livenessProbe".into(), true)),
        "{verdict:?}"
    );
    // The user is told why, and how to trust a mirror.
    assert!(
        verdict
            .notices
            .iter()
            .any(|n| n.container.as_deref() == Some("queue-proxy")
                && n.hint.contains("scope.queueProxyImages")),
        "{:?}",
        verdict.notices
    );
    // …and the readiness probe it claims to run for the user container is not believed.
    assert!(verdict.findings.iter().any(|f| {
        f.violation.container.as_deref() == Some("user-container")
            && f.violation.field.ends_with("readinessProbe")
    }));
}

#[tokio::test]
async fn lookalike_repositories_are_not_knative_releases() {
    for image in [
        format!("{QUEUE}-debug@{DIGEST}"),
        format!("{QUEUE}/x@{DIGEST}"),
        format!("gcr.io/knative-releases.evil.io/knative.dev/serving/cmd/queue@{DIGEST}"),
        format!("evil.io/gcr.io/knative-releases/knative.dev/serving/cmd/queue@{DIGEST}"),
        // Unparseable: never trusted.
        format!("{QUEUE}/../queue@{DIGEST}"),
    ] {
        let mut pod = knative_pod();
        set_queue_image(&mut pod, &image);
        assert!(!judge(&pod).await.allowed(), "{image} must not be trusted");
    }
}

#[tokio::test]
async fn the_clusters_queue_proxy_still_needs_a_digest() {
    let mut pod = knative_pod();
    set_queue_image(&mut pod, &format!("{QUEUE}:v1.15.0"));
    let verdict = judge(&pod).await;
    // Only the digest: still no probes or resources asked of the cluster's container.
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    assert_eq!(
        verdict.findings[0].violation.container.as_deref(),
        Some("queue-proxy")
    );
}

#[tokio::test]
async fn a_mirror_is_trusted_once_configured_and_replaces_the_default() {
    let mirror = format!("registry.corp.example:5000/mirror/knative/queue@{DIGEST}");
    let config = || {
        Config::parse("scope: {queueProxyImages: ['registry.corp.example:5000/mirror/knative/*']}")
            .expect("config")
    };
    let mut pod = knative_pod();
    set_queue_image(&mut pod, &mirror);
    assert!(!judge(&pod).await.allowed(), "not trusted by default");
    let verdict = judge_with(config(), &pod).await;
    assert!(verdict.findings.is_empty(), "{:?}", verdict.findings);

    let mut pod = knative_pod();
    set_queue_image(&mut pod, &format!("{QUEUE}@{DIGEST}"));
    assert!(!judge_with(config(), &pod).await.allowed());
}

#[tokio::test]
async fn knative_deployments_and_replicasets_are_read_like_their_pods() {
    // What Knative's reconciler creates first: a Deployment whose template is the pod.
    let pod = knative_pod();
    for kind in ["Deployment", "ReplicaSet"] {
        let object = json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "sentiment-00001-deployment", "namespace": "ml-serving"},
            "spec": {"template": {"metadata": pod["metadata"].clone(), "spec": pod["spec"].clone()}}
        });
        let verdict = judge(&object).await;
        assert!(
            verdict.findings.is_empty(),
            "{kind}: {:?}",
            verdict.findings
        );

        // The same foreign queue-proxy is no more welcome at the Deployment level.
        let mut object = object;
        object["spec"]["template"]["spec"]["containers"][1]["image"] =
            json!(format!("docker.io/attacker/miner@{DIGEST}"));
        assert!(!judge(&object).await.allowed(), "{kind}");
    }
}

#[tokio::test]
async fn queue_proxy_is_only_exempt_in_pods_knative_built() {
    // The same container in a Deployment without Knative's labels is the author's.
    let mut d = deployment(good_container());
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    containers.push(json!({"name": "queue-proxy", "image": format!("{QUEUE}@{DIGEST}")}));
    let verdict = judge(&d).await;
    assert!(
        about_queue_proxy(&verdict).contains(&(PolicyName::Probes, "livenessProbe".into(), true)),
        "{verdict:?}"
    );
}
