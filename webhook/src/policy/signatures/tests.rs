//! The signature policy inside the engine, with verdicts that need no registry content:
//! unmatched images, unreachable registries, modes, exemptions, Knative's queue-proxy.
//! Verification against a real registry: tests/e2e/tests/webhook_signatures.rs.

use std::{path::PathBuf, time::Duration};

use serde_json::{json, Value};

use crate::{
    config::Config,
    engine::{Engine, EngineOptions, Verdict},
    error::ConfigError,
    policy::PolicyName,
    workload::{Workload, WorkloadKind},
};

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----";

/// Nothing listens on port 1: a connection is refused at once.
const DOWN: &str = "127.0.0.1:1";

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

/// A config with one key rule over `images`; `extra` goes at the top level, `rule_extra`
/// into the rule.
fn config(images: &str, rule_extra: &str, extra: &str) -> Config {
    let key = KEY.replace('\n', "\n          ");
    let yaml = format!(
        "{extra}\nsignatures:\n  budget: 2s\n  registries: [{{host: \"{DOWN}\", insecure: true}}]\n  \
         rules:\n  - name: models\n    images: [\"{images}\"]\n    keys:\n      - pem: |\n          {key}\n{rule_extra}"
    );
    Config::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn engine(config: Config) -> Engine {
    Engine::build(config, &EngineOptions::unregistered()).expect("valid engine")
}

/// A Deployment whose one well-probed container runs `image`.
fn deployment(image: &str) -> Workload {
    let probe = json!({"httpGet": {"path": "/v2/health/ready", "port": 8080}});
    let value = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "models"},
        "spec": {"template": {"metadata": {"labels": {"app": "llm"}}, "spec": {"containers": [{
            "name": "server", "image": image,
            "readinessProbe": probe, "livenessProbe": probe,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
        }]}}}
    });
    read(&value)
}

fn read(value: &Value) -> Workload {
    let kind = WorkloadKind::from_api_version(
        value["apiVersion"].as_str().expect("apiVersion"),
        value["kind"].as_str().expect("kind"),
    )
    .expect("workload kind");
    Workload::read(kind, value).expect("readable workload")
}

/// The Pod Knative builds for a revision: user-container plus its queue-proxy.
fn knative_pod() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/knative-revision-pod.yaml");
    let text = std::fs::read_to_string(&path).expect("knative pod fixture");
    crate::check::parse_documents("pod", &text).expect("fixture parses")[0]
        .value
        .clone()
}

fn signature_findings(verdict: &Verdict) -> Vec<(String, bool)> {
    verdict
        .findings
        .iter()
        .filter(|f| f.violation.policy == PolicyName::Signatures)
        .map(|f| (f.violation.message.clone(), f.enforced))
        .collect()
}

#[tokio::test]
async fn pinned_image_matching_no_rule_is_denied_and_tags_are_left_to_digest() {
    let engine = engine(config("r.example.com/models/**", "", ""));
    let verdict = engine
        .evaluate(&deployment(&format!("quay.io/acme/app@{}", digest())))
        .await;
    assert!(!verdict.allowed());
    let found = signature_findings(&verdict);
    assert_eq!(found.len(), 1, "{verdict:?}");
    assert!(
        found[0].0.contains("matches no signature rule"),
        "{found:?}"
    );
    let violation = &verdict.findings[0].violation;
    assert_eq!(violation.container.as_deref(), Some("server"));
    assert_eq!(violation.field, "spec.template.spec.containers[0].image");
    assert!(violation.hint.contains("cosign sign"), "{violation:?}");

    // A tag-only image is the digest policy's to report, once.
    let verdict = engine.evaluate(&deployment("quay.io/acme/app:v1")).await;
    let policies: Vec<PolicyName> = verdict
        .findings
        .iter()
        .map(|f| f.violation.policy)
        .collect();
    assert_eq!(policies, vec![PolicyName::Digest]);
}

#[tokio::test]
async fn no_match_warn_allows_with_a_notice_that_reaches_the_warnings() {
    let engine = engine(config("r.example.com/**", "", "")).config().clone();
    let mut config = engine;
    config.signatures.no_match = Some(crate::signatures::NoMatch::Warn);
    let engine = self::engine(config);
    let verdict = engine
        .evaluate(&deployment(&format!("quay.io/acme/app@{}", digest())))
        .await;
    assert!(verdict.allowed(), "{verdict:?}");
    assert!(verdict.findings.is_empty(), "{verdict:?}");
    assert_eq!(verdict.notices.len(), 1);
    let warnings = verdict.warnings();
    assert!(
        warnings[0].starts_with("guardrail: [signatures] container \"server\"")
            && warnings[0].contains("matches no signature rule"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn unreachable_registry_denies_with_the_reason_unless_on_error_allows() {
    let image = format!("{DOWN}/models/llm@{}", digest());
    let verdict = engine(config(&format!("{DOWN}/models/**"), "", ""))
        .evaluate(&deployment(&image))
        .await;
    let found = signature_findings(&verdict);
    assert_eq!(found.len(), 1, "{verdict:?}");
    assert!(
        found[0].0.contains("could not verify signature of") && found[0].0.contains(DOWN),
        "{found:?}"
    );
    assert!(!verdict.allowed());

    let verdict = engine(config(
        &format!("{DOWN}/models/**"),
        "    onError: allow",
        "",
    ))
    .evaluate(&deployment(&image))
    .await;
    assert!(verdict.allowed(), "{verdict:?}");
    assert!(verdict.findings.is_empty(), "{verdict:?}");
    assert!(
        verdict.notices[0]
            .message
            .contains("allowed because onError is allow"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn modes_and_exempt_images_apply_to_signatures() {
    let image = format!("quay.io/acme/app@{}", digest());
    let audit = engine(config(
        "r.example.com/**",
        "",
        "policies: {signatures: {mode: audit}}",
    ))
    .evaluate(&deployment(&image))
    .await;
    assert!(audit.allowed());
    assert_eq!(signature_findings(&audit).len(), 1);
    assert!(
        !signature_findings(&audit)[0].1,
        "audit finding must not deny"
    );

    let global_audit = engine(config("r.example.com/**", "", "mode: audit"))
        .evaluate(&deployment(&image))
        .await;
    assert!(global_audit.allowed());
    assert_eq!(signature_findings(&global_audit).len(), 1);

    let off = engine(config(
        "r.example.com/**",
        "",
        "policies: {signatures: {mode: off}}",
    ))
    .evaluate(&deployment(&image))
    .await;
    assert!(off.allowed() && off.findings.is_empty(), "{off:?}");

    let exempt = engine(config(
        "r.example.com/**",
        "",
        "scope: {exemptImages: [\"quay.io/acme/**\"]}",
    ))
    .evaluate(&deployment(&image))
    .await;
    assert!(exempt.findings.is_empty(), "{exempt:?}");
}

#[tokio::test]
async fn knative_queue_proxy_is_not_asked_for_a_signature_in_pods_knative_built() {
    let mut pod = knative_pod();
    // The model image moves to a registry that refuses connections, so the verdict is
    // known without network access; a rule covers the model only, noMatch is deny.
    let containers = pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    let user = containers
        .iter_mut()
        .find(|c| c["name"] == "user-container")
        .expect("user-container");
    user["image"] = json!(format!("{DOWN}/acme/sentiment@{}", digest()));
    let verdict = engine(config(&format!("{DOWN}/acme/**"), "    onError: allow", ""))
        .evaluate(&read(&pod))
        .await;
    assert!(verdict.allowed(), "{verdict:?}");
    let about: Vec<Option<&str>> = verdict
        .findings
        .iter()
        .map(|f| &f.violation)
        .chain(&verdict.notices)
        .map(|v| v.container.as_deref())
        .collect();
    // queue-proxy's image is the cluster's (Knative's config-deployment), not the author's.
    assert_eq!(about, vec![Some("user-container")], "{verdict:?}");
}

#[tokio::test]
async fn a_queue_proxy_from_elsewhere_is_asked_for_a_signature() {
    let mut pod = knative_pod();
    // A bare Pod labelled as Knative's, with a "queue-proxy" that is not Knative's image.
    pod["spec"]["containers"][1]["image"] = json!(format!("docker.io/attacker/miner@{}", digest()));
    let verdict = engine(config(&format!("{DOWN}/acme/**"), "", ""))
        .evaluate(&read(&pod))
        .await;
    assert!(
        verdict.findings.iter().any(|f| f.enforced
            && f.violation.policy == PolicyName::Signatures
            && f.violation.container.as_deref() == Some("queue-proxy")),
        "{verdict:?}"
    );

    // Next to the cluster's queue-proxy, a debug container of the same name is the
    // author's (only an unvalidated file can hold both, but `check` reads those).
    let mut pod = knative_pod();
    pod["spec"]["ephemeralContainers"] = json!([{"name": "queue-proxy",
        "image": format!("docker.io/attacker/miner@{}", digest())}]);
    let verdict = engine(config(&format!("{DOWN}/acme/**"), "", ""))
        .evaluate(&read(&pod))
        .await;
    assert!(
        verdict
            .findings
            .iter()
            .any(|f| f.violation.policy == PolicyName::Signatures
                && f.violation.field == "spec.ephemeralContainers[0].image"),
        "{verdict:?}"
    );
}

#[test]
fn budget_must_fit_in_the_request_timeout() {
    let options = EngineOptions {
        request_timeout: Some(Duration::from_secs(2)),
        ..EngineOptions::unregistered()
    };
    let err = match Engine::build(config("r.example.com/**", "", ""), &options) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 2s budget must not fit in a 2s request timeout"),
    };
    assert!(
        err.contains("signatures.budget") && err.contains("--request-timeout"),
        "{err}"
    );
    let options = EngineOptions {
        request_timeout: Some(Duration::from_secs(3)),
        ..EngineOptions::unregistered()
    };
    assert!(Engine::build(config("r.example.com/**", "", ""), &options).is_ok());
}

#[test]
fn signature_config_errors_name_the_field() {
    let err = Config::parse("signatures:\n  rules:\n  - images: [\"r.example.com/**\"]\n    keys: [{pem: x}]\n    threshold: 3\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("signatures.rules[0]"), "{err}");

    let err = Config::parse("signatures:\n  treshold: 2\n").err();
    assert!(matches!(err, Some(ConfigError::Parse { .. })), "{err:?}");

    let bad_key =
        "signatures:\n  rules:\n  - images: [\"r.example.com/**\"]\n    keys: [{pem: not-a-key}]\n";
    let config = Config::parse(bad_key).expect("shape is valid; the key is checked at build");
    let err = match Engine::build(config, &EngineOptions::unregistered()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an unparsable key must not build"),
    };
    assert!(err.contains("signatures.rules[0].keys[0]"), "{err}");
}

#[test]
fn engine_new_refuses_signature_rules_instead_of_dropping_them() {
    let err = Engine::new(config("r.example.com/**", "", ""))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("signatures.rules") && err.contains("Engine::build"),
        "{err}"
    );
}

#[test]
fn skip_signatures_builds_no_verifier() {
    let options = EngineOptions {
        skip_signatures: true,
        request_timeout: Some(Duration::from_millis(1)),
        ..EngineOptions::unregistered()
    };
    // Neither the budget check nor key loading runs; the config is still validated.
    assert!(Engine::build(config("r.example.com/**", "", ""), &options).is_ok());
}
