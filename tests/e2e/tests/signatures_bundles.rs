//! Sigstore bundles as `cosign sign` v3 attaches them (OCI referrers, DSSE envelope of a
//! `cosign/sign/v1` Statement), made by an independent signer: sigstore-js
//! (`@sigstore/sign` with a key signer, `@sigstore/oci` attaching the bundle; on Debian's
//! distribution 2.8, which has no referrers API, it writes the referrers tag schema
//! index, so that is the path tested here). Verified by the webhook's verifier and by
//! the `check` binary, which must agree.

use std::{path::Path, process::Command, time::Instant};

use guardrail_e2e::{
    bins::bin,
    registry::{
        cosign::{push_legacy_attestations, sign_with_keys, KeySigner},
        sigstore_js::{
            attach_attestation, attach_bundle, attach_keyless_bundle, attach_logged_bundle,
            KeylessSigning, LogForm,
        },
        verifier, write, RegistryOptions, TestRegistry,
    },
};
use guardrail_webhook::signatures::ImageVerdict;

const USER: &str = "ci";
const PASSWORD: &str = "s3cret";

struct Setup {
    reg: TestRegistry,
    auth_file: std::path::PathBuf,
}

/// A registry that answers with an auth challenge (which @sigstore/oci needs).
fn setup() -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let reg = TestRegistry::start(RegistryOptions {
        tls: None,
        basic_auth: Some((USER, PASSWORD)),
    });
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#,
        reg.host
    );
    let auth_file = write(reg.dir.path(), "dockerconfig.json", &auth);
    Setup { reg, auth_file }
}

fn config(reg: &TestRegistry, keys: &[&KeySigner], threshold: usize, extra: &str) -> String {
    let files: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "{{file: {}}}",
                write(reg.dir.path(), &format!("k{i}.pub"), &k.public_pem).display()
            )
        })
        .collect();
    format!(
        "registries: [{{host: \"{host}\", insecure: true}}]\n{extra}rules:\n- name: release\n  images: [\"{host}/models/**\"]\n  threshold: {threshold}\n  keys: [{}]\n",
        files.join(", "),
        host = reg.host
    )
}

fn denied(verdict: ImageVerdict) -> String {
    match verdict {
        ImageVerdict::Denied { reason } | ImageVerdict::Unverifiable { reason } => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// `check` on a pod running `image` with `signatures` as its config: the exit code.
fn check(dir: &Path, signatures: &str, image: &str, auth: &Path) -> i32 {
    let indented: String = signatures.lines().map(|l| format!("  {l}\n")).collect();
    let config = write(
        dir,
        "check-config.yaml",
        &format!("signatures:\n{indented}"),
    );
    let pod = guardrail_e2e::webhook::probed_pod("p", image);
    let manifest = write(dir, "pod.json", &pod.to_string());
    Command::new(bin("guardrail-webhook"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .arg("--registry-auth")
        .arg(auth)
        .arg(manifest)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_signed_v3_bundle_is_enough_and_check_and_serve_agree() {
    let s = setup();
    let key = KeySigner::new();
    let digest = s.reg.push_image("models/llm", "v1").await;
    attach_bundle(&s.reg, "models/llm", &digest, &key, &digest);
    let image = s.reg.pinned("models/llm", &digest);
    let yaml = config(&s.reg, &[&key], 1, "");
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    // No legacy `.sig` tag exists: the bundle alone is the signature.
    let cold = Instant::now();
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    let cold = cold.elapsed();
    let warm = Instant::now();
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    eprintln!(
        "v3 bundle verification: cold {cold:?}, warm {:?}",
        warm.elapsed()
    );
    assert_eq!(
        check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file),
        0
    );

    // Another key's bundle does not count, and says why.
    let stranger = KeySigner::new();
    let (v, _) = verifier(&config(&s.reg, &[&stranger], 1, ""), Some(&s.auth_file));
    let reason = denied(v.check(&image).await);
    assert!(
        reason.contains("0 of the required 1 trusted key(s) signed a Sigstore bundle"),
        "{reason}"
    );
    assert!(reason.contains("not signed by a trusted key"), "{reason}");
    assert_eq!(
        check(
            s.reg.dir.path(),
            &config(&s.reg, &[&stranger], 1, ""),
            &image.to_string(),
            &s.auth_file
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_for_another_digest_is_refused() {
    let s = setup();
    let key = KeySigner::new();
    let digest = s.reg.push_image("models/llm", "v1").await;
    let other = s.reg.push_image("models/other", "v1").await;
    assert_ne!(digest, other);
    // Attached to our image, but its signed Statement names the other digest.
    attach_bundle(&s.reg, "models/llm", &digest, &key, &other);
    let (v, _) = verifier(&config(&s.reg, &[&key], 1, ""), Some(&s.auth_file));
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(reason.contains("signed subject is not"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_and_legacy_signatures_count_together_toward_the_threshold() {
    let s = setup();
    let (a, b) = (KeySigner::new(), KeySigner::new());
    let digest = s.reg.push_image("models/llm", "v1").await;
    let image = s.reg.pinned("models/llm", &digest);
    let yaml = config(&s.reg, &[&a, &b], 2, "");
    // The legacy `.sig` alone: one of two.
    sign_with_keys(&s.reg, "models/llm", &digest, &[&a]).await;
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    let reason = denied(v.check(&image).await);
    assert!(reason.contains("1 of the required 2"), "{reason}");
    // Plus a v3 bundle by the other key: two distinct keys, in two formats.
    attach_bundle(&s.reg, "models/llm", &digest, &b, &digest);
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    // The legacy signature alone still works for a one-key rule.
    let (v, _) = verifier(&config(&s.reg, &[&a], 1, ""), Some(&s.auth_file));
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrers_flood_beyond_the_cap_is_a_denial_that_names_the_limit() {
    let s = setup();
    let key = KeySigner::new();
    let digest = s.reg.push_image("models/llm", "v1").await;
    for _ in 0..3 {
        attach_bundle(&s.reg, "models/llm", &digest, &KeySigner::new(), &digest);
    }
    let yaml = config(&s.reg, &[&key], 1, "limits: {maxReferrers: 2}\n");
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(
        reason.contains("signatures.limits.maxReferrers"),
        "{reason}"
    );
}

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1";

fn keyless_config(reg: &TestRegistry, root: &Path, identity: &str) -> String {
    format!(
        "registries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- name: ci\n  images: [\"{host}/models/**\"]\n  keyless:\n    trustedRoot: {root}\n    identities: [{identity}]\n",
        host = reg.host,
        root = root.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_v3_bundle_is_verified_for_its_identity_and_its_log_entry() {
    let s = setup();
    let digest = s.reg.push_image("models/llm", "v1").await;
    let root = s.reg.dir.path().join("trusted_root.json");
    let signing = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &root,
        no_tlog: false,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(&s.reg, "models/llm", &digest, &digest, &signing);
    let image = s.reg.pinned("models/llm", &digest);

    // The exact identity, and a regular expression over the workflow.
    for identity in [
        format!("{{issuer: \"{ISSUER}\", subject: \"{WORKFLOW}\"}}"),
        format!("{{issuer: \"{ISSUER}\", subjectRegExp: \"https://github.com/acme/[^/]+/.github/workflows/release.yml@refs/tags/v.*\"}}"),
    ] {
        let yaml = keyless_config(&s.reg, &root, &identity);
        let (v, _) = verifier(&yaml, Some(&s.auth_file));
        assert_eq!(v.check(&image).await, ImageVerdict::Allowed, "{identity}");
        assert_eq!(check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file), 0, "{identity}");
    }
    // Another workflow, another issuer: denied, by both.
    for identity in [
        format!("{{issuer: \"{ISSUER}\", subject: \"https://github.com/acme/models/.github/workflows/other.yml@refs/tags/v1\"}}"),
        format!("{{issuer: \"https://accounts.google.com\", subject: \"{WORKFLOW}\"}}"),
    ] {
        let yaml = keyless_config(&s.reg, &root, &identity);
        let (v, _) = verifier(&yaml, Some(&s.auth_file));
        let reason = denied(v.check(&image).await);
        assert!(reason.contains("keyless bundle rejected"), "{reason}");
        assert_eq!(check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_bundles_without_a_log_entry_or_from_an_untrusted_ca_are_refused() {
    let s = setup();
    let identity = format!("{{issuer: \"{ISSUER}\", subject: \"{WORKFLOW}\"}}");
    // No Rekor entry: a keyless signature cannot skip the log.
    let digest = s.reg.push_image("models/llm", "v1").await;
    let root = s.reg.dir.path().join("root-a.json");
    let signing = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &root,
        no_tlog: true,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(&s.reg, "models/llm", &digest, &digest, &signing);
    let (v, _) = verifier(
        &keyless_config(&s.reg, &root, &identity),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(reason.contains("exactly one Rekor entry"), "{reason}");

    // Signed under one mock Sigstore, checked against another's trust root.
    let other_digest = s.reg.push_image("models/llm", "v2").await;
    let first = s.reg.dir.path().join("root-b.json");
    let second = s.reg.dir.path().join("root-c.json");
    let signing = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &first,
        no_tlog: false,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(&s.reg, "models/llm", &other_digest, &other_digest, &signing);
    // A second, unrelated mock Sigstore (its own CA and log) for a throwaway image.
    let throwaway = s.reg.push_image("models/throwaway", "v1").await;
    let unrelated = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &second,
        no_tlog: false,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(
        &s.reg,
        "models/throwaway",
        &throwaway,
        &throwaway,
        &unrelated,
    );
    let (v, _) = verifier(
        &keyless_config(&s.reg, &second, &identity),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &other_digest)).await);
    assert!(
        reason.contains("not in the trusted root") || reason.contains("keyless bundle rejected"),
        "{reason}"
    );
    // A log time the SET does not vouch for (sigstore-rs trusts it unchecked).
    let forged = s.reg.push_image("models/llm", "v4").await;
    let root_e = s.reg.dir.path().join("root-e.json");
    let signing = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &root_e,
        no_tlog: false,
        forge_integrated_time: true,
    };
    attach_keyless_bundle(&s.reg, "models/llm", &forged, &forged, &signing);
    let (v, _) = verifier(
        &keyless_config(&s.reg, &root_e, &identity),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &forged)).await);
    assert!(
        reason.contains("Signed Entry Timestamp does not verify"),
        "{reason}"
    );
    // And a keyless bundle for another digest.
    let third = s.reg.push_image("models/llm", "v3").await;
    let root_d = s.reg.dir.path().join("root-d.json");
    let signing = KeylessSigning {
        issuer: ISSUER,
        subject: WORKFLOW,
        trusted_root: &root_d,
        no_tlog: false,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(&s.reg, "models/llm", &third, &other_digest, &signing);
    let (v, _) = verifier(
        &keyless_config(&s.reg, &root_d, &identity),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &third)).await);
    assert!(reason.contains("keyless bundle rejected"), "{reason}");
}

fn transparency_config(reg: &TestRegistry, key: &KeySigner, mode: &str, root: &Path) -> String {
    let file = write(reg.dir.path(), "t.pub", &key.public_pem);
    format!(
        "registries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- name: release\n  images: [\"{host}/models/**\"]\n  keys: [{{file: {}}}]\n  transparency: {mode}\n  trustedRoot: {}\n",
        file.display(),
        root.display(),
        host = reg.host
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparency_required_counts_only_bundles_with_a_verified_log_entry_for_this_signature() {
    let s = setup();
    let key = KeySigner::new();
    let root = s.reg.dir.path().join("rekor-root.json");
    // Logged in a (mock) Rekor: allowed under required and optional.
    let logged = s.reg.push_image("models/llm", "logged").await;
    attach_logged_bundle(
        &s.reg,
        "models/llm",
        &logged,
        &key,
        &logged,
        Some(&root),
        LogForm::V1,
        false,
    );
    for mode in ["required", "optional"] {
        let (v, _) = verifier(
            &transparency_config(&s.reg, &key, mode, &root),
            Some(&s.auth_file),
        );
        assert_eq!(
            v.check(&s.reg.pinned("models/llm", &logged)).await,
            ImageVerdict::Allowed,
            "{mode}"
        );
    }
    // An entry proven by its inclusion proof alone (offline: the audit path to a
    // checkpoint the log signed), from Rekor v1 without its SET and from Rekor v2.
    for (tag, form) in [
        ("proof-only", LogForm::V1ProofOnly),
        ("rekor-v2", LogForm::V2),
    ] {
        let digest = s.reg.push_image("models/llm", tag).await;
        let root = s.reg.dir.path().join(format!("{tag}-root.json"));
        attach_logged_bundle(
            &s.reg,
            "models/llm",
            &digest,
            &key,
            &digest,
            Some(&root),
            form,
            false,
        );
        let (v, _) = verifier(
            &transparency_config(&s.reg, &key, "required", &root),
            Some(&s.auth_file),
        );
        assert_eq!(
            v.check(&s.reg.pinned("models/llm", &digest)).await,
            ImageVerdict::Allowed,
            "{tag}"
        );
    }
    // A Rekor v2 entry whose audit path does not lead to the signed checkpoint.
    let broken = s.reg.push_image("models/llm", "broken-proof").await;
    let broken_root = s.reg.dir.path().join("broken-root.json");
    attach_logged_bundle(
        &s.reg,
        "models/llm",
        &broken,
        &key,
        &broken,
        Some(&broken_root),
        LogForm::V2BrokenProof,
        false,
    );
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "optional", &broken_root),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &broken)).await);
    assert!(
        reason.contains("inclusion proof does not verify"),
        "{reason}"
    );
    // Not logged: denied under required, allowed under optional.
    let unlogged = s.reg.push_image("models/llm", "unlogged").await;
    attach_bundle(&s.reg, "models/llm", &unlogged, &key, &unlogged);
    let image = s.reg.pinned("models/llm", &unlogged);
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "required", &root),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&image).await);
    assert!(reason.contains("no transparency log entry"), "{reason}");
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "optional", &root),
        Some(&s.auth_file),
    );
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    // A log entry for another key's signature does not vouch for this one.
    let mislogged = s.reg.push_image("models/llm", "mislogged").await;
    let other_root = s.reg.dir.path().join("rekor-root-2.json");
    attach_logged_bundle(
        &s.reg,
        "models/llm",
        &mislogged,
        &key,
        &mislogged,
        Some(&other_root),
        LogForm::V2,
        true,
    );
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "optional", &other_root),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &mislogged)).await);
    assert!(
        reason.contains("not for this payload, signature and key"),
        "{reason}"
    );
    // A log the trust root does not know.
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "required", &root),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &mislogged)).await);
    assert!(reason.contains("not in the trusted root"), "{reason}");
    // Legacy signatures carry no log entry checked here: they do not count under required.
    let legacy = s.reg.push_image("models/llm", "legacy").await;
    sign_with_keys(&s.reg, "models/llm", &legacy, &[&key]).await;
    let (v, _) = verifier(
        &transparency_config(&s.reg, &key, "required", &root),
        Some(&s.auth_file),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &legacy)).await);
    assert!(
        reason.contains("legacy .sig signatures do not count"),
        "{reason}"
    );
}

const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
const SLSA: &str = "https://slsa.dev/provenance/v1";

fn attestation_config(reg: &TestRegistry, key: &KeySigner, requirements: &str) -> String {
    let file = write(reg.dir.path(), "att.pub", &key.public_pem);
    format!(
        "registries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- name: release\n  images: [\"{host}/models/**\"]\n  keys: [{{file: {}}}]\n  attestations:\n{requirements}",
        file.display(),
        host = reg.host
    )
}

/// A Trivy-style cosign vulnerability predicate with findings of `severity`, finished
/// `age` ago.
fn scan(severity: &str, age: std::time::Duration) -> serde_json::Value {
    let finished =
        chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now() - age).to_rfc3339();
    serde_json::json!({
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.1", "result": {"Results": [
            {"Target": "model", "Vulnerabilities": [{"VulnerabilityID": "CVE-2026-0001", "Severity": severity}]}
        ]}},
        "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished},
    })
}

const NO_CRITICAL_FRESH: &str = "    - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1\n      policy: \"predicate.scanner.result.Results.all(r, !has(r.Vulnerabilities) || r.Vulnerabilities.all(v, v.Severity != 'CRITICAL')) && now - timestamp(predicate.metadata.scanFinishedOn) < duration('168h')\"\n";
const FROM_ACME: &str = "    - predicateType: https://slsa.dev/provenance/v1\n      policy: \"predicate.buildDefinition.externalParameters.workflow.repository == 'https://github.com/acme/models'\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_must_be_signed_present_and_satisfy_their_cel_policies() {
    let s = setup();
    let key = KeySigner::new();
    let hour = std::time::Duration::from_secs(3600);
    let signed = |tag: &'static str| {
        let s = &s;
        let key = &key;
        async move {
            let digest = s.reg.push_image("models/llm", tag).await;
            attach_bundle(&s.reg, "models/llm", &digest, key, &digest);
            digest
        }
    };
    let requirements = format!("{NO_CRITICAL_FRESH}{FROM_ACME}");
    let yaml = attestation_config(&s.reg, &key, &requirements);
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    let provenance = |repo: &str| serde_json::json!({"buildDefinition": {"externalParameters": {"workflow": {"repository": repo}}}});

    // Both attestations, both policies true: allowed, by the verifier and by check.
    let good = signed("good").await;
    attach_attestation(&s.reg, "models/llm", &good, &key, VULN, &scan("HIGH", hour));
    attach_attestation(
        &s.reg,
        "models/llm",
        &good,
        &key,
        SLSA,
        &provenance("https://github.com/acme/models"),
    );
    let image = s.reg.pinned("models/llm", &good);
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    assert_eq!(
        check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file),
        0
    );

    // A CRITICAL finding: denied, naming the expression.
    let critical = signed("critical").await;
    attach_attestation(
        &s.reg,
        "models/llm",
        &critical,
        &key,
        VULN,
        &scan("CRITICAL", hour),
    );
    attach_attestation(
        &s.reg,
        "models/llm",
        &critical,
        &key,
        SLSA,
        &provenance("https://github.com/acme/models"),
    );
    let image = s.reg.pinned("models/llm", &critical);
    let reason = denied(v.check(&image).await);
    assert!(
        reason.contains(VULN)
            && reason.contains("Severity != 'CRITICAL'")
            && reason.contains("is false"),
        "{reason}"
    );
    assert_eq!(
        check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file),
        1
    );

    // A stale scan (eight days old): denied by the time clause.
    let stale = signed("stale").await;
    attach_attestation(
        &s.reg,
        "models/llm",
        &stale,
        &key,
        VULN,
        &scan("HIGH", 8 * 24 * hour),
    );
    attach_attestation(
        &s.reg,
        "models/llm",
        &stale,
        &key,
        SLSA,
        &provenance("https://github.com/acme/models"),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &stale)).await);
    assert!(reason.contains("is false"), "{reason}");

    // Provenance from another repository.
    let forked = signed("forked").await;
    attach_attestation(
        &s.reg,
        "models/llm",
        &forked,
        &key,
        VULN,
        &scan("LOW", hour),
    );
    attach_attestation(
        &s.reg,
        "models/llm",
        &forked,
        &key,
        SLSA,
        &provenance("https://github.com/evil/models"),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &forked)).await);
    assert!(
        reason.contains(SLSA) && reason.contains("acme/models"),
        "{reason}"
    );

    // No attestation at all (CVE-2022-35930), and one signed by a stranger.
    let bare = signed("bare").await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &bare)).await);
    assert!(
        reason.contains("no trusted attestation of type"),
        "{reason}"
    );
    let strangers = signed("strangers").await;
    let stranger = KeySigner::new();
    attach_attestation(
        &s.reg,
        "models/llm",
        &strangers,
        &stranger,
        VULN,
        &scan("LOW", hour),
    );
    attach_attestation(
        &s.reg,
        "models/llm",
        &strangers,
        &stranger,
        SLSA,
        &provenance("https://github.com/acme/models"),
    );
    let reason = denied(v.check(&s.reg.pinned("models/llm", &strangers)).await);
    assert!(
        reason.contains("no trusted attestation of type"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_att_attestations_count_and_meet_the_same_policies() {
    let s = setup();
    let key = KeySigner::new();
    let hour = std::time::Duration::from_secs(3600);
    let yaml = attestation_config(&s.reg, &key, NO_CRITICAL_FRESH);
    let (v, _) = verifier(&yaml, Some(&s.auth_file));
    // A legacy signature plus a legacy `.att` scan: allowed, by the verifier and check.
    let digest = s.reg.push_image("models/llm", "legacy").await;
    sign_with_keys(&s.reg, "models/llm", &digest, &[&key]).await;
    push_legacy_attestations(
        &s.reg,
        "models/llm",
        &digest,
        &key,
        &[(VULN, scan("MEDIUM", hour))],
    )
    .await;
    let image = s.reg.pinned("models/llm", &digest);
    assert_eq!(v.check(&image).await, ImageVerdict::Allowed);
    assert_eq!(
        check(s.reg.dir.path(), &yaml, &image.to_string(), &s.auth_file),
        0
    );
    // A CRITICAL finding in the legacy attestation: denied naming the expression.
    let bad = s.reg.push_image("models/llm", "legacy-critical").await;
    sign_with_keys(&s.reg, "models/llm", &bad, &[&key]).await;
    push_legacy_attestations(
        &s.reg,
        "models/llm",
        &bad,
        &key,
        &[(VULN, scan("CRITICAL", hour))],
    )
    .await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &bad)).await);
    assert!(reason.contains("Severity != 'CRITICAL'"), "{reason}");
    // Signed by a stranger: not trusted, so missing.
    let strange = s.reg.push_image("models/llm", "legacy-stranger").await;
    sign_with_keys(&s.reg, "models/llm", &strange, &[&key]).await;
    push_legacy_attestations(
        &s.reg,
        "models/llm",
        &strange,
        &KeySigner::new(),
        &[(VULN, scan("LOW", hour))],
    )
    .await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &strange)).await);
    assert!(
        reason.contains("no trusted attestation of type"),
        "{reason}"
    );
}
