//! Key-based cosign verification against a real `docker-registry` over plain HTTP.

use std::time::Duration;

use guardrail_e2e::registry::cosign::{
    payload, push_signatures, sign_with_keys, KeySigner, SigLayer,
};
use guardrail_e2e::registry::slow_proxy::SlowProxy;
use guardrail_e2e::registry::{metric, verifier, write, RegistryOptions, TestRegistry};
use guardrail_webhook::signatures::ImageVerdict;

/// Config trusting `keys` (written to files) with `threshold` for every image of `reg`.
fn config(reg: &TestRegistry, keys: &[&KeySigner], extra_rule: &str) -> String {
    let key_lines: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let path = write(reg.dir.path(), &format!("key{i}.pub"), &k.public_pem);
            format!("    - file: {}\n", path.display())
        })
        .collect();
    format!(
        "registries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- name: models\n  images: [\"{host}/models/**\"]\n  keys:\n{key_lines}{extra_rule}",
        host = reg.host
    )
}

fn denied_reason(verdict: ImageVerdict) -> String {
    match verdict {
        ImageVerdict::Denied { reason } | ImageVerdict::Unverifiable { reason } => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn trusted_key_allows_and_others_deny() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let trusted = KeySigner::new();
    let stranger = KeySigner::new();
    let (v, _) = verifier(&config(&reg, &[&trusted], ""), None);

    let signed = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &signed, &[&trusted]).await;
    assert_eq!(
        v.check(&reg.pinned("models/llm", &signed)).await,
        ImageVerdict::Allowed
    );

    let unsigned = reg.push_image("models/llm", "v2").await;
    let reason = denied_reason(v.check(&reg.pinned("models/llm", &unsigned)).await);
    assert!(reason.contains("no cosign signature found"), "{reason}");

    let foreign = reg.push_image("models/llm", "v3").await;
    sign_with_keys(&reg, "models/llm", &foreign, &[&stranger]).await;
    let reason = denied_reason(v.check(&reg.pinned("models/llm", &foreign)).await);
    assert!(
        reason.contains("0 of the required 1 trusted key(s) signed"),
        "{reason}"
    );
}

#[tokio::test]
async fn signatures_for_another_digest_or_tampered_payloads_deny() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let (v, _) = verifier(&config(&reg, &[&key], ""), None);
    let reference = format!("{}/models/llm", reg.host);

    // A valid signature of image A copied under image B's signature tag.
    let a = reg.push_image("models/llm", "a").await;
    let b = reg.push_image("models/llm", "b").await;
    push_signatures(
        &reg,
        "models/llm",
        &b,
        &[SigLayer::signed(payload(&reference, &a), &key)],
    )
    .await;
    let reason = denied_reason(v.check(&reg.pinned("models/llm", &b)).await);
    assert!(
        reason.contains("none of the 1 signature layer(s) is valid"),
        "{reason}"
    );

    // A payload edited after signing (here: to name this digest).
    let c = reg.push_image("models/llm", "c").await;
    let mut layer = SigLayer::signed(payload(&reference, &c), &key);
    layer.payload = payload(&format!("{reference}-evil"), &c);
    push_signatures(&reg, "models/llm", &c, &[layer]).await;
    let reason = denied_reason(v.check(&reg.pinned("models/llm", &c)).await);
    assert!(reason.contains("0 of the required 1"), "{reason}");
}

#[tokio::test]
async fn threshold_counts_distinct_trusted_keys() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let keys = [KeySigner::new(), KeySigner::new(), KeySigner::new()];
    let refs: Vec<&KeySigner> = keys.iter().collect();
    let (v, _) = verifier(&config(&reg, &refs, "  threshold: 2\n"), None);

    let two = reg.push_image("models/a", "two").await;
    sign_with_keys(&reg, "models/a", &two, &[&keys[0], &keys[2]]).await;
    assert_eq!(
        v.check(&reg.pinned("models/a", &two)).await,
        ImageVerdict::Allowed
    );

    // The same key twice is still one key.
    let one = reg.push_image("models/a", "one").await;
    sign_with_keys(&reg, "models/a", &one, &[&keys[1], &keys[1]]).await;
    let reason = denied_reason(v.check(&reg.pinned("models/a", &one)).await);
    assert!(reason.contains("1 of the required 2"), "{reason}");
}

#[tokio::test]
async fn tag_and_digest_verifies_the_digest_not_the_tag() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let (v, _) = verifier(&config(&reg, &[&key], ""), None);
    let tagged = reg.push_image("models/llm", "prod").await;
    sign_with_keys(&reg, "models/llm", &tagged, &[&key]).await;
    let other = reg.push_image("models/llm", "scratch").await;

    let image = format!("{}/models/llm:prod@{other}", reg.host)
        .parse()
        .expect("ref");
    let reason = denied_reason(v.check(&image).await);
    assert!(reason.contains("no cosign signature found"), "{reason}");
    let image = format!("{}/models/llm:prod@{tagged}", reg.host)
        .parse()
        .expect("ref");
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
}

#[tokio::test]
async fn cache_hits_do_not_reach_the_registry() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let (v, metrics) = verifier(&config(&reg, &[&key], ""), None);
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let image = reg.pinned("models/llm", &digest);
    let sig_path = format!("/manifests/{}.sig", digest.replace(':', "-"));

    // Concurrent admissions of one digest share a single registry round-trip.
    let verdicts = futures::future::join_all((0..5).map(|_| v.check(&image))).await;
    assert!(
        verdicts.iter().all(|v| *v == ImageVerdict::Allowed),
        "{verdicts:?}"
    );
    let fetched =
        guardrail_e2e::process::eventually("access log lines", Duration::from_secs(5), || {
            let n = reg.requests_for(&sig_path);
            async move { (n > 0).then_some(n) }
        })
        .await;
    assert_eq!(
        metric(
            &metrics,
            "guardrail_signature_cache_lookups_total{result=\"miss\"}"
        ),
        1.0
    );

    for _ in 0..3 {
        assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    }
    assert_eq!(
        metric(
            &metrics,
            "guardrail_signature_cache_lookups_total{result=\"hit\"}"
        ),
        7.0
    );
    assert_eq!(
        reg.requests_for(&sig_path),
        fetched,
        "cache hits must not reach the registry"
    );
}

#[tokio::test]
async fn stopped_registry_denies_with_reason_or_warns_under_on_error_allow() {
    let mut reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let image = reg.pinned("models/llm", &digest);
    let (strict, metrics) = verifier(&config(&reg, &[&key], ""), None);
    let (lenient, lenient_metrics) = verifier(&config(&reg, &[&key], "  onError: allow\n"), None);
    reg.stop();

    let reason = denied_reason(strict.check(&image).await);
    assert!(
        reason.contains(&format!("could not verify signature of {image}")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("registry {}", reg.host)),
        "{reason}"
    );
    assert_eq!(
        metric(
            &metrics,
            "guardrail_signature_registry_errors_total{kind=\"connect\"}"
        ),
        1.0
    );

    match lenient.check(&image).await {
        ImageVerdict::AllowedWithWarning { reason } => {
            assert!(reason.contains("onError is allow"), "{reason}")
        }
        other => panic!("expected a warning, got {other:?}"),
    }
    assert_eq!(
        metric(
            &lenient_metrics,
            "guardrail_signature_on_error_allowed_total"
        ),
        1.0
    );
}

#[tokio::test]
async fn slow_registry_is_cut_off_by_the_budget() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let proxy = SlowProxy::start(reg.addr, Duration::from_secs(2)).await;
    let host = proxy.addr.to_string();
    let key_file = write(reg.dir.path(), "slow.pub", &key.public_pem);
    let (v, metrics) = verifier(
        &format!(
            "budget: 400ms\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  keys: [{{file: {}}}]\n",
            key_file.display()
        ),
        None,
    );
    let image = format!("{host}/models/llm@{digest}").parse().expect("ref");
    // The outer timeout only turns a hang into a failure; the budget is what must hold.
    let verdict = tokio::time::timeout(Duration::from_secs(30), v.check(&image))
        .await
        .expect("check() must return by itself");
    let reason = denied_reason(verdict);
    assert!(reason.contains("timed out after 400ms"), "{reason}");
    assert_eq!(
        metric(
            &metrics,
            "guardrail_signature_registry_errors_total{kind=\"budget\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn hostile_signature_manifests_hit_the_limits() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key, &key, &key]).await;
    let image = reg.pinned("models/llm", &digest);

    for (limit, expected) in [
        (
            "maxSignatures: 2",
            "3 signature layers, limit is 2 (signatures.limits.maxSignatures)",
        ),
        (
            "maxLayerBytes: 100",
            "limit is 100 (signatures.limits.maxLayerBytes)",
        ),
        (
            "maxManifestBytes: 200",
            "limit is 200 (signatures.limits.maxManifestBytes)",
        ),
    ] {
        let yaml = format!("limits: {{{limit}}}\n{}", config(&reg, &[&key], ""));
        let (v, _) = verifier(&yaml, None);
        let reason = denied_reason(v.check(&image).await);
        assert!(reason.contains(expected), "{limit}: {reason}");
    }

    let (v, _) = verifier(&config(&reg, &[&key], ""), None);
    assert_eq!(
        v.check(&image).await,
        ImageVerdict::Allowed,
        "within the default limits"
    );
}

#[tokio::test]
async fn p384_ed25519_and_rsa_keys_verify() {
    use sigstore::crypto::SigningScheme;
    let reg = TestRegistry::start(RegistryOptions::default());
    let p384 = KeySigner::with_scheme(SigningScheme::ECDSA_P384_SHA384_ASN1);
    let ed25519 = KeySigner::with_scheme(SigningScheme::ED25519);
    let rsa = KeySigner::with_scheme(SigningScheme::RSA_PKCS1_SHA256(2048));
    let (v, _) = verifier(
        &config(&reg, &[&p384, &ed25519, &rsa], "  threshold: 3\n"),
        None,
    );
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&p384, &ed25519, &rsa]).await;
    assert_eq!(
        v.check(&reg.pinned("models/llm", &digest)).await,
        ImageVerdict::Allowed
    );
    let other = reg.push_image("models/llm", "v2").await;
    sign_with_keys(&reg, "models/llm", &other, &[&ed25519]).await;
    let reason = denied_reason(v.check(&reg.pinned("models/llm", &other)).await);
    assert!(reason.contains("1 of the required 3"), "{reason}");
}
