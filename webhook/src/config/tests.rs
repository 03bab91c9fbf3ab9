use super::*;

fn error_of(yaml: &str) -> String {
    Config::parse(yaml)
        .expect_err("config must be rejected")
        .to_string()
}

#[test]
fn the_attestation_example_parses_and_its_policies_compile() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/attestation-rules.yaml");
    let config = Config::load(&path).expect("examples/attestation-rules.yaml loads");
    let rules = &config.signatures.rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].attestations.len(), 2);
    // A policy that does not compile is refused naming the field.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("&& now", "&& now ++", 1);
    let error = Config::parse(&text).unwrap_err().to_string();
    assert!(
        error.contains("signatures.rules[0].attestations[0].policy"),
        "{error}"
    );
}

#[test]
fn empty_file_means_documented_defaults() {
    let config = Config::parse("").expect("empty config");
    assert_eq!(config.policies, Policies::default());
    assert_eq!(config.scope, Scope::default());
    assert_eq!(config.mode, Mode::Enforce);
    assert_eq!(config.policies.digest.mode, PolicyMode::Enforce);
    assert_eq!(config.policies.probes.mode, PolicyMode::Enforce);
    assert_eq!(config.policies.resources.mode, PolicyMode::Audit);
    assert!(!config.policies.probes.allow_tcp_readiness);
    assert_eq!(
        config.policies.probes.warmup_annotation,
        DEFAULT_WARMUP_ANNOTATION
    );
    assert_eq!(config.scope.exempt_namespaces, ["kube-system"]);
    assert!(config.scope.exempt_containers.is_empty());
}

#[test]
fn the_sample_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/guardrail-config.yaml");
    let config = Config::load(&path).expect("sample config loads");
    assert_eq!(config.scope.exempt_images, ["docker.io/istio/proxyv2:*"]);
}

#[test]
fn unknown_fields_are_rejected_with_name_and_line() {
    let message = error_of("mode: enforce\npolicies:\n  digest:\n    mdoe: audit\n");
    assert!(message.contains("mdoe"), "{message}");
    assert!(message.contains('4'), "line number missing: {message}");
}

#[test]
fn bad_values_are_rejected() {
    let message = error_of("policies:\n  probes:\n    mode: sometimes\n");
    assert!(message.contains("sometimes"), "{message}");
}

#[test]
fn validate_names_the_field() {
    let message = error_of("scope:\n  exemptImages: ['ghcr.io/[acme']\n");
    assert!(message.contains("scope.exemptImages[0]"), "{message}");

    let message = error_of("scope: {selector: {matchExpressions: [{key: a, operator: In}]}}");
    assert!(
        message.contains("scope.selector.matchExpressions[0].values"),
        "{message}"
    );

    let message = error_of("scope: {exemptContainers: ['']}");
    assert!(message.contains("scope.exemptContainers[0]"), "{message}");

    let message = error_of("policies: {probes: {warmupAnnotation: ' '}}");
    assert!(
        message.contains("policies.probes.warmupAnnotation"),
        "{message}"
    );

    let message = error_of("apiVersion: guardrail.dev/v9\n");
    assert!(message.contains("apiVersion"), "{message}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardrail.yaml");
    std::fs::write(&path, "policies: {digest: {mode: loud}}\n").expect("write");
    let message = Config::load(&path).expect_err("invalid").to_string();
    assert!(message.contains("guardrail.yaml"), "{message}");
    let missing = Config::load(&dir.path().join("nope.yaml"))
        .expect_err("missing")
        .to_string();
    assert!(missing.contains("nope.yaml"), "{missing}");
}

#[test]
fn selector_semantics_match_kubernetes() {
    let selector: LabelSelector = serde_saphyr::from_str(
        "matchLabels: {team: ml}\nmatchExpressions:\n  - {key: tier, operator: NotIn, values: [dev]}\n  - {key: legacy, operator: DoesNotExist}\n",
    )
    .expect("selector");
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(selector.matches(&labels(&[("team", "ml")])));
    assert!(selector.matches(&labels(&[("team", "ml"), ("tier", "prod")])));
    assert!(!selector.matches(&labels(&[("team", "ml"), ("tier", "dev")])));
    assert!(!selector.matches(&labels(&[("team", "ml"), ("legacy", "")])));
    assert!(!selector.matches(&labels(&[("team", "web")])));
}
