//! Verifier behaviour that needs no registry content: matching, pinning, failures.
//! Verification against real registries lives in tests/e2e/tests/signatures_*.rs.

use super::*;
use prometheus_client::registry::Registry;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----";

fn verifier(yaml: &str) -> (SignatureVerifier, Registry) {
    let config: SignaturesConfig = serde_saphyr::from_str(yaml).expect("valid yaml");
    let mut registry = Registry::default();
    let v = SignatureVerifier::new(&config, None, &mut registry).expect("valid config");
    (v, registry)
}

fn rule_yaml(images: &str, extra: &str) -> String {
    let key = KEY.replace('\n', "\n        ");
    format!("rules:\n- name: models\n  images: [\"{images}\"]\n  keys:\n    - pem: |\n        {key}\n{extra}")
}

fn image(s: &str) -> Reference {
    s.parse().expect("valid reference")
}

fn digest_ref(repo: &str) -> Reference {
    image(&format!("{repo}@sha256:{}", "ab".repeat(32)))
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}

#[tokio::test]
async fn no_rules_allows_everything() {
    let (v, _) = verifier("rules: []");
    assert!(!v.has_rules());
    assert_eq!(v.check(&image("nginx")).await, ImageVerdict::Allowed);
}

#[tokio::test]
async fn no_match_policy_applies() {
    let (v, _) = verifier(&rule_yaml("r.example.com/models/**", ""));
    let verdict = v.check(&digest_ref("quay.io/other/app")).await;
    let ImageVerdict::Denied { reason } = verdict else {
        panic!("unmatched image must be denied by default: {verdict:?}");
    };
    assert!(reason.contains("matches no signature rule"), "{reason}");

    let (v, _) = verifier(&format!(
        "noMatch: warn\n{}",
        rule_yaml("r.example.com/**", "")
    ));
    assert!(matches!(
        v.check(&digest_ref("quay.io/other/app")).await,
        ImageVerdict::AllowedWithWarning { .. }
    ));
}

#[tokio::test]
async fn tag_only_images_never_reach_a_registry() {
    let (v, registry) = verifier(&rule_yaml("127.0.0.1:1/**", ""));
    let verdict = v.check(&image("127.0.0.1:1/models/a:v1")).await;
    let ImageVerdict::Denied { reason } = verdict else {
        panic!("tag-only must be denied: {verdict:?}");
    };
    assert!(reason.contains("not pinned by a sha256 digest"), "{reason}");
    // Every registry error kind exists from start-up, and stays 0.
    let text = metrics_text(&registry);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("guardrail_signature_registry_errors_total{"))
        .collect();
    assert!(
        !errors.is_empty() && errors.iter().all(|l| l.ends_with(" 0")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn unreachable_registry_is_denied_with_the_reason_or_warned() {
    // Port 1 on loopback refuses connections.
    let yaml = format!(
        "registries: [{{host: \"127.0.0.1:1\", insecure: true}}]\n{}",
        rule_yaml("127.0.0.1:1/**", "")
    );
    let (v, registry) = verifier(&yaml);
    let verdict = v.check(&digest_ref("127.0.0.1:1/models/a")).await;
    // Typed: the registry is the cause, not the image.
    let ImageVerdict::Unverifiable { reason } = verdict else {
        panic!("must deny as unverifiable: {verdict:?}");
    };
    assert!(reason.contains("could not verify signature of"), "{reason}");
    assert!(reason.contains("127.0.0.1:1"), "{reason}");
    let text = metrics_text(&registry);
    assert!(
        text.contains("guardrail_signature_registry_errors_total{kind=\"connect\"} 1"),
        "{text}"
    );

    let yaml = format!(
        "registries: [{{host: \"127.0.0.1:1\", insecure: true}}]\n{}",
        rule_yaml("127.0.0.1:1/**", "  onError: allow\n")
    );
    let (v, registry) = verifier(&yaml);
    let verdict = v.check(&digest_ref("127.0.0.1:1/models/a")).await;
    assert!(
        matches!(verdict, ImageVerdict::AllowedWithWarning { ref reason } if reason.contains("onError")),
        "{verdict:?}"
    );
    assert!(metrics_text(&registry).contains("guardrail_signature_on_error_allowed_total 1"));
}

#[tokio::test]
async fn a_silent_registry_cannot_exceed_the_budget() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let yaml = format!(
        "budget: 300ms\nregistries: [{{host: \"{host}\", insecure: true}}]\n{}",
        rule_yaml(&format!("{host}/**"), "")
    );
    let (v, registry) = verifier(&yaml);
    let verdict = tokio::time::timeout(
        Duration::from_secs(5),
        v.check(&digest_ref(&format!("{host}/m/a"))),
    )
    .await
    .expect("check() returns on its own, bounded by the budget");
    let ImageVerdict::Unverifiable { reason } = verdict else {
        panic!("must deny: {verdict:?}");
    };
    assert!(reason.contains("timed out after 300ms"), "{reason}");
    assert!(metrics_text(&registry).contains("kind=\"budget\"} 1"));
    hold.abort();
}

#[test]
fn bad_keys_and_auth_files_are_config_errors() {
    let config: SignaturesConfig =
        serde_saphyr::from_str("rules:\n- images: [r.io/**]\n  keys: [{pem: \"not a key\"}]\n")
            .expect("valid yaml");
    let err = SignatureVerifier::new(&config, None, &mut Registry::default())
        .err()
        .expect("bad key");
    assert!(
        err.to_string().contains("signatures.rules[0].keys[0]"),
        "{err}"
    );

    let (ok, _) = (
        serde_saphyr::from_str::<SignaturesConfig>("rules: []").expect("yaml"),
        (),
    );
    let err = SignatureVerifier::new(
        &ok,
        Some(Path::new("/nonexistent/auth.json")),
        &mut Registry::default(),
    )
    .err()
    .expect("missing auth file");
    assert!(err.to_string().contains("/nonexistent/auth.json"), "{err}");
}

#[test]
fn digest_shape_is_checked() {
    assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
    assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
    assert!(!is_sha256_digest("sha256:abc"));
    assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(64))));
}

#[tokio::test]
async fn check_all_keeps_order_and_reloads_reuse_metrics() {
    let mut registry = Registry::default();
    let metrics = SignatureMetrics::new(&mut registry);
    let config: SignaturesConfig =
        serde_saphyr::from_str(&rule_yaml("r.example.com/**", "")).expect("yaml");
    let first = SignatureVerifier::with_metrics(&config, None, metrics.clone()).expect("first");
    let reloaded = SignatureVerifier::with_metrics(&config, None, metrics).expect("reload");
    let verdicts = first
        .check_all(&[image("r.example.com/a:v1"), digest_ref("quay.io/b")])
        .await;
    assert!(
        matches!(&verdicts[0], ImageVerdict::Denied { reason } if reason.contains("not pinned"))
    );
    assert!(
        matches!(&verdicts[1], ImageVerdict::Denied { reason } if reason.contains("no signature rule"))
    );
    reloaded.check(&digest_ref("quay.io/c")).await;
    let text = metrics_text(&registry);
    assert!(
        text.contains("guardrail_signature_decisions_total{verdict=\"denied\"} 3"),
        "{text}"
    );
}
