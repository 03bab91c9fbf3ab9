use super::*;

#[test]
fn empty_document_is_the_default() {
    let c = Config::from_yaml("").expect("empty config");
    assert_eq!(c.listen.port(), 8090);
    assert_eq!(c.admin_listen.port(), 9095);
    assert_eq!(c.window.sub_windows, DEFAULT_SUB_WINDOWS);
    assert_eq!(c.sanity.max_body_bytes, 1 << 20);
}

#[test]
fn full_document_parses() {
    let c = Config::from_yaml(
        r#"
upstream: http://127.0.0.1:9000
upstreamTimeout: 5s
window: { length: 30s, subWindows: 6 }
sanity:
  protocol: kserve_v1
  probabilities: true
  rules:
    - { name: label, pointer: /predictions, enum: [cat, dog] }
    - { name: conf, pointer: /confidence, range: { min: 0.0, max: 1.0 } }
    - { name: id, pointer: /id, regex: "^[a-z]+$" }
  score: { pointer: /predictions, edges: [0.5], reference: [1, 1] }
"#,
    )
    .expect("valid config");
    assert_eq!(c.upstream_timeout, Duration::from_secs(5));
    assert_eq!(c.sanity.rules.len(), 3);
    assert_eq!(c.sanity.protocol, Protocol::KserveV1);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("upstream: https://x:1", "upstream"),
        ("upstream: http://x", "upstream"),
        ("window: { length: 1s, subWindows: 60 }", "window.length"),
        ("window: { subWindows: 0 }", "window.subWindows"),
        (
            "sanity: { score: { pointer: /s, edges: [1, 0], reference: [1, 1, 1] } }",
            "sanity.score.edges",
        ),
        (
            "sanity: { score: { pointer: /s, edges: [0.5], reference: [1] } }",
            "sanity.score.reference",
        ),
        (
            "sanity: { rules: [ { name: r, pointer: x, nonEmpty: true } ] }",
            "sanity.rules[].pointer",
        ),
        (
            "sanity: { rules: [ { name: r, pointer: /x, regex: '(' } ] }",
            "sanity.rules[].regex",
        ),
        ("readinessPath: health", "readinessPath"),
    ];
    for (yaml, field) in cases {
        let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(err.contains(field), "{yaml}: `{err}` should name {field}");
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let err = Config::from_yaml("listen_addr: 0.0.0.0:1").expect_err("unknown field");
    assert!(err.to_string().contains("listen_addr"), "{err}");
}

#[test]
fn snake_case_field_names_are_rejected() {
    for yaml in [
        "admin_listen: 0.0.0.0:1",
        "window: { sub_windows: 6 }",
        "sanity: { max_body_bytes: 0 }",
        "sanity: { rules: [ { name: r, pointer: /a, non_empty: true } ] }",
        "guardrails: { thresholds: { max_error_ratio: 0.1 } }",
    ] {
        let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
        let key = yaml
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| w.contains('_'))
            .expect("a snake_case key");
        assert!(err.contains(key), "{yaml}: `{err}` should name {key}");
    }
    let c = Config::from_yaml(
        "adminListen: 0.0.0.0:1
guardrails: { thresholds: { maxErrorRatio: 0.1 } }",
    )
    .expect("camelCase parses");
    assert_eq!(c.admin_listen.port(), 1);
    assert_eq!(c.guardrails.thresholds.max_error_ratio, Some(0.1));
}
