use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::{config::Config, workload::WorkloadKind};

mod bypasses;
mod queue_proxy;

fn repo_file(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn objects(yaml: &str) -> Vec<Value> {
    crate::check::parse_documents("test", yaml)
        .expect("test YAML parses")
        .into_iter()
        .map(|o| o.value)
        .collect()
}

fn workload(value: &Value) -> Workload {
    let kind = WorkloadKind::from_api_version(
        value["apiVersion"].as_str().expect("apiVersion"),
        value["kind"].as_str().expect("kind"),
    )
    .expect("a workload kind");
    Workload::read(kind, value).expect("readable workload")
}

async fn judge_with(config: Config, value: &Value) -> Verdict {
    Engine::new(config)
        .expect("valid config")
        .evaluate(&workload(value))
        .await
}

async fn judge(value: &Value) -> Verdict {
    judge_with(Config::default(), value).await
}

/// (policy, field suffix) of every finding, for compact asserts.
fn found(verdict: &Verdict) -> Vec<(PolicyName, String, bool)> {
    verdict
        .findings
        .iter()
        .map(|f| {
            let field = f
                .violation
                .field
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_string();
            (f.violation.policy, field, f.enforced)
        })
        .collect()
}

/// Knative's release repository for queue-proxy (the `scope.queueProxyImages` default).
const QUEUE: &str = "gcr.io/knative-releases/knative.dev/serving/cmd/queue";

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn deployment(container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": {"template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": [container]}}}
    })
}

fn good_container() -> Value {
    json!({
        "name": "server", "image": format!("ghcr.io/acme/m@{DIGEST}"),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080}},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    })
}

#[tokio::test]
async fn every_good_example_is_allowed_without_findings() {
    for file in [
        "examples/good/knative-service.yaml",
        "examples/good/inferenceservice-custom.yaml",
        "examples/good/inferenceservice-runtime.yaml",
        "examples/good/deployment.yaml",
        "examples/good/cronjob.yaml",
        "examples/good/pod.yaml",
    ] {
        for object in objects(&repo_file(file)) {
            let verdict = judge(&object).await;
            assert!(verdict.skipped.is_none(), "{file}: skipped");
            assert!(
                verdict.findings.is_empty(),
                "{file}: {:?}",
                verdict.findings
            );
        }
    }
}

#[tokio::test]
async fn the_pod_knative_builds_from_the_good_service_is_allowed() {
    let pod = &objects(&repo_file("webhook/tests/data/knative-revision-pod.yaml"))[0];
    let verdict = judge(pod).await;
    assert!(verdict.findings.is_empty(), "{:?}", verdict.findings);
}

#[tokio::test]
async fn knative_pod_readiness_is_read_from_queue_proxy() {
    let mut pod = objects(&repo_file("webhook/tests/data/knative-revision-pod.yaml")).remove(0);
    let env = pod["spec"]["containers"][1]["env"]
        .as_array_mut()
        .expect("env");
    let probe = env
        .iter_mut()
        .find(|e| e["name"] == "SERVING_READINESS_PROBE")
        .expect("probe env");
    // What Knative passes on when the author wrote no readiness probe: its TCP default.
    probe["value"] =
        json!(r#"{"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1}"#);
    let verdict = judge(&pod).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Probes, "readinessProbe".into(), true)]
    );

    env_remove(&mut pod, "SERVING_READINESS_PROBE");
    let verdict = judge(&pod).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Probes, "readinessProbe".into(), true)]
    );
    assert!(verdict.findings[0]
        .violation
        .message
        .contains("no readiness probe"));
}

#[tokio::test]
async fn the_pod_kserve_builds_in_serverless_mode_is_judged_like_knative() {
    let pinned = |name: &str| format!("docker.io/kserve/{name}@{DIGEST}");
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "iris-predictor-00001-deployment-", "namespace": "ml-serving",
            "labels": {"serving.knative.dev/revision": "iris-predictor-00001",
                       "serving.kserve.io/inferenceservice": "iris", "component": "predictor"}},
        "spec": {
            "initContainers": [{"name": "storage-initializer", "image": pinned("storage-initializer"),
                                "args": ["gs://kfserving-examples/models/sklearn/1.0/model", "/mnt/models"]}],
            "containers": [
                {"name": "kserve-container", "image": pinned("sklearnserver"),
                 "ports": [{"name": "user-port", "containerPort": 8080}],
                 "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080}},
                 "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
                {"name": "queue-proxy", "image": format!("{QUEUE}@{DIGEST}"),
                 "env": [{"name": "SERVING_READINESS_PROBE",
                          "value": r#"{"httpGet":{"path":"/v2/health/ready","port":8080},"successThreshold":1}"#}]}
            ]
        }
    });
    assert!(
        judge(&pod).await.findings.is_empty(),
        "{:?}",
        judge(&pod).await.findings
    );

    // KServe's default runtime images are tags: the pod is denied until they are pinned.
    pod["spec"]["initContainers"][0]["image"] = json!("kserve/storage-initializer:v0.14.0");
    assert_eq!(
        found(&judge(&pod).await),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
}

fn env_remove(pod: &mut Value, name: &str) {
    let env = pod["spec"]["containers"][1]["env"]
        .as_array_mut()
        .expect("env");
    env.retain(|e| e["name"] != name);
}

#[tokio::test]
async fn knative_revision_as_the_controller_creates_it_is_allowed() {
    let service = &objects(&repo_file("examples/good/knative-service.yaml"))[0];
    let mut spec = service["spec"]["template"]["spec"].clone();
    spec["containers"][0]["name"] = json!("user-container");
    let revision = json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": "sentiment-00001", "namespace": "ml-serving",
                     "annotations": service["spec"]["template"]["metadata"]["annotations"].clone()},
        "spec": spec
    });
    assert!(judge(&revision).await.findings.is_empty());
}

#[tokio::test]
async fn bad_deployment_lists_every_violation() {
    let object = &objects(&repo_file("examples/bad/deployment-unpinned.yaml"))[0];
    let verdict = judge(object).await;
    assert!(!verdict.allowed());
    assert_eq!(
        found(&verdict),
        vec![
            (PolicyName::Digest, "image".into(), true),
            (PolicyName::Probes, "readinessProbe".into(), true),
            (PolicyName::Probes, "livenessProbe".into(), true),
            (PolicyName::Resources, "resources".into(), false),
        ]
    );
    let message = verdict.denial_message("Deployment ml-serving/recommender");
    assert!(message.contains("3 violations"), "{message}");
    assert!(message.contains("containers[0].image"), "{message}");
    assert!(message.contains("fix:"), "{message}");
}

#[tokio::test]
async fn global_audit_mode_allows_and_warns() {
    let object = &objects(&repo_file("examples/bad/deployment-unpinned.yaml"))[0];
    let config = Config::parse("mode: audit").expect("config");
    let verdict = judge_with(config, object).await;
    assert!(verdict.allowed());
    assert_eq!(verdict.warnings().len(), 4);
}

#[tokio::test]
async fn policies_can_be_switched_off_or_relaxed() {
    let object = &objects(&repo_file("examples/bad/deployment-unpinned.yaml"))[0];
    let config = Config::parse(
        "policies: {digest: {mode: off}, probes: {allowTcpReadiness: true}, resources: {mode: enforce}}",
    )
    .expect("config");
    let verdict = judge_with(config, object).await;
    assert_eq!(
        found(&verdict),
        vec![
            (PolicyName::Probes, "livenessProbe".into(), true),
            (PolicyName::Resources, "resources".into(), true),
        ]
    );
}

#[tokio::test]
async fn warmup_needs_a_startup_probe_or_liveness_delay_that_covers_it() {
    let mut d = deployment(good_container());
    d["spec"]["template"]["metadata"]["annotations"] =
        json!({"guardrail.dev/warmup-seconds": "120"});
    let verdict = judge(&d).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Probes, "livenessProbe".into(), true)]
    );

    // 10 × 12 = 120 s of startup probing covers it exactly.
    let container = &mut d["spec"]["template"]["spec"]["containers"][0];
    container["startupProbe"] =
        json!({"httpGet": {"path": "/", "port": 8080}, "failureThreshold": 12});
    assert!(judge(&d).await.findings.is_empty());

    // One period short is not enough.
    let container = &mut d["spec"]["template"]["spec"]["containers"][0];
    container["startupProbe"]["failureThreshold"] = json!(11);
    assert_eq!(
        found(&judge(&d).await),
        vec![(PolicyName::Probes, "startupProbe".into(), true)]
    );

    // A liveness delay is equivalent: 100 + 10 × 3 ≥ 120.
    let container = &mut d["spec"]["template"]["spec"]["containers"][0];
    container
        .as_object_mut()
        .expect("container")
        .remove("startupProbe");
    container["livenessProbe"]["initialDelaySeconds"] = json!(100);
    assert!(judge(&d).await.findings.is_empty());

    d["spec"]["template"]["metadata"]["annotations"] =
        json!({"guardrail.dev/warmup-seconds": "2m"});
    let verdict = judge(&d).await;
    assert_eq!(verdict.findings.len(), 1);
    assert!(verdict.findings[0]
        .violation
        .message
        .contains("not a whole number"));
}

#[tokio::test]
async fn readiness_without_handler_is_a_violation() {
    let mut c = good_container();
    c["readinessProbe"] = json!({"periodSeconds": 5});
    let verdict = judge(&deployment(c)).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Probes, "readinessProbe".into(), true)]
    );
    assert!(verdict.findings[0].violation.message.contains("no handler"));
}

#[tokio::test]
async fn grpc_and_exec_readiness_are_accepted() {
    for probe in [
        json!({"grpc": {"port": 9000}}),
        json!({"exec": {"command": ["ready"]}}),
    ] {
        let mut c = good_container();
        c["readinessProbe"] = probe;
        assert!(judge(&deployment(c)).await.findings.is_empty());
    }
}

#[tokio::test]
async fn scope_exempts_namespaces_labels_and_selector_misses() {
    let bad = objects(&repo_file("examples/bad/deployment-unpinned.yaml")).remove(0);
    let mut in_system = bad.clone();
    in_system["metadata"]["namespace"] = json!("kube-system");
    assert!(judge(&in_system).await.skipped.is_some());

    let config = Config::parse("scope: {exemptLabels: {app: recommender}}").expect("config");
    assert!(judge_with(config, &bad).await.skipped.is_some());

    let config = Config::parse("scope: {selector: {matchLabels: {team: ml}}}").expect("config");
    let verdict = judge_with(config, &bad).await;
    assert!(verdict.skipped.is_some() && verdict.allowed());

    let config = Config::parse(
        "scope: {selector: {matchExpressions: [{key: app, operator: In, values: [recommender]}]}}",
    )
    .expect("config");
    assert!(!judge_with(config, &bad).await.allowed());
}

#[tokio::test]
async fn exempt_containers_sidecars_and_image_globs() {
    let mut d = deployment(good_container());
    let sidecar = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0"});
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(sidecar);
    // A sidecar needs no probes, but its image is still checked…
    assert_eq!(
        found(&judge(&d).await),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    // …unless an image glob exempts it (`*` within a segment).
    let config =
        Config::parse("scope: {exemptImages: ['docker.io/istio/proxyv2:*']}").expect("config");
    assert!(judge_with(config, &d).await.findings.is_empty());
    let config = Config::parse("scope: {exemptImages: ['docker.io/*:*']}").expect("config");
    assert!(
        !judge_with(config, &d).await.findings.is_empty(),
        "* must not cross /"
    );
    // Exempt containers skip every policy.
    let config = Config::parse("scope: {exemptContainers: [istio-proxy]}").expect("config");
    assert!(judge_with(config, &d).await.findings.is_empty());
}

#[tokio::test]
async fn jobs_and_init_and_ephemeral_containers_only_need_pinned_images() {
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "train", "image": "acme/train:1"}]}}}
    });
    assert_eq!(
        found(&judge(&job).await),
        vec![(PolicyName::Digest, "image".into(), true)]
    );

    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ml"},
        "spec": {"containers": [good_container()],
                 "initContainers": [{"name": "init", "image": format!("acme/init@{DIGEST}")}],
                 "ephemeralContainers": [{"name": "debugger", "image": "busybox"}]}
    });
    let verdict = judge(&pod).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    assert_eq!(
        verdict.findings[0].violation.container.as_deref(),
        Some("debugger")
    );
    assert!(verdict.findings[0]
        .violation
        .field
        .contains("ephemeralContainers[0]"));

    pod["spec"]["ephemeralContainers"][0]["image"] = json!(format!("busybox@{DIGEST}"));
    assert!(judge(&pod).await.findings.is_empty());
}

#[tokio::test]
async fn kserve_explicit_model_image_is_checked_but_runtime_containers_are_not() {
    let mut isvc = objects(&repo_file("examples/good/inferenceservice-runtime.yaml")).remove(0);
    assert!(judge(&isvc).await.findings.is_empty());
    isvc["spec"]["predictor"]["model"]["image"] = json!("kserve/sklearnserver:v0.14.0");
    let verdict = judge(&isvc).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    assert_eq!(
        verdict.findings[0].violation.field,
        "spec.predictor.model.image"
    );
}

#[tokio::test]
async fn kserve_transformer_is_checked_too() {
    let mut isvc = objects(&repo_file("examples/good/inferenceservice-custom.yaml")).remove(0);
    isvc["spec"]["transformer"] = json!({"containers": [{"image": "acme/tokenizer:1"}]});
    let verdict = judge(&isvc).await;
    let fields: Vec<&str> = verdict
        .findings
        .iter()
        .map(|f| f.violation.field.as_str())
        .collect();
    assert!(
        fields.contains(&"spec.transformer.containers[0].image"),
        "{fields:?}"
    );
    assert!(verdict
        .findings
        .iter()
        .all(|f| f.violation.container.as_deref() == Some("kserve-container")));
}

#[tokio::test]
async fn update_is_not_blocked_by_what_the_old_object_already_had() {
    let old = objects(&repo_file("examples/bad/deployment-unpinned.yaml")).remove(0);
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"relabelled": "yes"});
    let engine = Engine::new(Config::default()).expect("engine");
    let old_verdict = engine.evaluate(&workload(&old)).await;
    let verdict = engine
        .evaluate(&workload(&new))
        .await
        .grandfather(&old_verdict);
    assert!(verdict.allowed());
    assert_eq!(verdict.warnings().len(), 4);

    // A new tag is a new violation and still denies.
    new["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/acme/recommender:next");
    let verdict = engine
        .evaluate(&workload(&new))
        .await
        .grandfather(&old_verdict);
    assert!(!verdict.allowed());
}
