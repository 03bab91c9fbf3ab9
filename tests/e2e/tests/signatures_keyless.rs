//! Keyless (Fulcio certificate + Rekor bundle) verification, fully offline, against a
//! real `docker-registry` behind TLS (CA made in the test) with htpasswd basic auth.

use guardrail_e2e::registry::cosign::{
    payload, push_signatures, sign_with_keys, KeySigner, BUNDLE_ANNOTATION, CERT_ANNOTATION,
    SIGNATURE_ANNOTATION,
};
use guardrail_e2e::registry::keyless::{Identity, TestSigstore};
use guardrail_e2e::registry::{metric, verifier, write, RegistryOptions, TestCa, TestRegistry};
use guardrail_webhook::signatures::ImageVerdict;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str =
    "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/main";

struct Setup {
    reg: TestRegistry,
    sigstore: TestSigstore,
    auth_file: std::path::PathBuf,
}

fn setup(ca: &TestCa) -> Setup {
    let reg = TestRegistry::start(RegistryOptions {
        tls: Some(ca),
        basic_auth: Some(("ci", "s3cret")),
    });
    let auth = format!(
        r#"{{"auths":{{"{}":{{"username":"ci","password":"s3cret"}}}}}}"#,
        reg.host
    );
    let auth_file = write(reg.dir.path(), "dockerconfig.json", &auth);
    Setup {
        reg,
        sigstore: TestSigstore::new(),
        auth_file,
    }
}

fn config(s: &Setup, identities: &str) -> String {
    let root = s.sigstore.write_trusted_root(s.reg.dir.path());
    let ca = s.reg.ca_file().expect("TLS registry");
    format!(
        "registries: [{{host: \"{host}\", caFile: {ca}}}]\nrules:\n- name: release\n  images: [\"{host}/models/**\"]\n  keyless:\n    trustedRoot: {root}\n    identities:\n{identities}",
        host = s.reg.host,
        ca = ca.display(),
        root = root.display()
    )
}

async fn push_keyless(
    s: &Setup,
    tag: &str,
    identity: &Identity<'_>,
    with_bundle: bool,
) -> oci_client::Reference {
    let digest = s.reg.push_image("models/llm", tag).await;
    let layer = s.sigstore.sign(
        payload(&format!("{}/models/llm", s.reg.host), &digest),
        identity,
        with_bundle,
    );
    push_signatures(&s.reg, "models/llm", &digest, &[layer]).await;
    s.reg.pinned("models/llm", &digest)
}

fn denied(verdict: ImageVerdict) -> String {
    match verdict {
        ImageVerdict::Denied { reason } => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn keyless_identities_decide() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new();
    let s = setup(&ca);
    let ids = format!("    - issuer: {ISSUER}\n      subject: \"{WORKFLOW}\"\n");
    let (v, _) = verifier(&config(&s, &ids), Some(&s.auth_file));

    let good = push_keyless(
        &s,
        "good",
        &Identity {
            subject: WORKFLOW,
            issuer: ISSUER,
        },
        true,
    )
    .await;
    assert_eq!(v.check(&good).await, ImageVerdict::Allowed);

    let other_workflow = "https://github.com/acme/models/.github/workflows/dev.yml@refs/heads/main";
    let img = push_keyless(
        &s,
        "subject",
        &Identity {
            subject: other_workflow,
            issuer: ISSUER,
        },
        true,
    )
    .await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains(&format!("untrusted keyless identities: {other_workflow}")),
        "{reason}"
    );

    let img = push_keyless(
        &s,
        "issuer",
        &Identity {
            subject: WORKFLOW,
            issuer: "https://evil.example",
        },
        true,
    )
    .await;
    let reason = denied(v.check(&img).await);
    assert!(reason.contains("(https://evil.example)"), "{reason}");

    let img = push_keyless(
        &s,
        "nobundle",
        &Identity {
            subject: WORKFLOW,
            issuer: ISSUER,
        },
        false,
    )
    .await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains("no signature with a trusted certificate and Rekor bundle"),
        "{reason}"
    );
}

#[tokio::test]
async fn certificates_from_another_ca_or_bundles_from_another_log_deny() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new();
    let s = setup(&ca);
    let ids =
        format!("    - issuer: {ISSUER}\n      subjectRegExp: \"https://github.com/acme/.*\"\n");
    let (v, _) = verifier(&config(&s, &ids), Some(&s.auth_file));
    let id = Identity {
        subject: WORKFLOW,
        issuer: ISSUER,
    };

    // Regex identities are anchored: a look-alike prefix does not pass.
    let img = push_keyless(&s, "regex-ok", &id, true).await;
    assert_eq!(v.check(&img).await, ImageVerdict::Allowed);
    let evil = "https://evil.io/?https://github.com/acme/x";
    let img = push_keyless(
        &s,
        "regex-bad",
        &Identity {
            subject: evil,
            issuer: ISSUER,
        },
        true,
    )
    .await;
    denied(v.check(&img).await);

    // Same identity, but a Sigstore the trusted root does not list.
    let rogue = TestSigstore::new();
    let digest = s.reg.push_image("models/llm", "rogue").await;
    let layer = rogue.sign(
        payload(&format!("{}/models/llm", s.reg.host), &digest),
        &id,
        true,
    );
    push_signatures(&s.reg, "models/llm", &digest, &[layer]).await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(
        reason.contains("Rekor bundle from an untrusted log"),
        "{reason}"
    );
}

#[tokio::test]
async fn basic_auth_registry_needs_the_docker_config() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new();
    let s = setup(&ca);
    let key = KeySigner::new();
    let key_file = write(s.reg.dir.path(), "cosign.pub", &key.public_pem);
    let digest = s.reg.push_image("models/llm", "v1").await;
    sign_with_keys(&s.reg, "models/llm", &digest, &[&key]).await;
    let image = s.reg.pinned("models/llm", &digest);
    let ca_file = s.reg.ca_file().expect("TLS");
    let yaml = format!(
        "registries: [{{host: \"{host}\", caFile: {ca}}}]\nrules:\n- images: [\"{host}/**\"]\n  keys: [{{file: {key}}}]\n",
        host = s.reg.host,
        ca = ca_file.display(),
        key = key_file.display()
    );

    let (with_auth, _) = verifier(&yaml, Some(&s.auth_file));
    assert_eq!(with_auth.check(&image).await, ImageVerdict::Allowed);

    let (anonymous, metrics) = verifier(&yaml, None);
    let reason = denied(anonymous.check(&image).await);
    assert!(reason.contains("could not verify signature"), "{reason}");
    assert_eq!(
        metric(
            &metrics,
            "guardrail_signature_registry_errors_total{kind=\"auth\"}"
        ),
        1.0
    );

    // Without the CA the registry's certificate is not trusted.
    let no_ca = yaml.replace(&format!(", caFile: {}", ca_file.display()), "");
    let (untrusting, _) = verifier(&no_ca, Some(&s.auth_file));
    let reason = denied(untrusting.check(&image).await);
    assert!(reason.contains("could not verify signature"), "{reason}");
}

#[tokio::test]
async fn chain_and_rekor_entry_must_belong_to_the_signature() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new();
    let s = setup(&ca);
    let ids = format!("    - issuer: {ISSUER}\n      subject: \"{WORKFLOW}\"\n");
    let (v, _) = verifier(&config(&s, &ids), Some(&s.auth_file));
    let id = Identity {
        subject: WORKFLOW,
        issuer: ISSUER,
    };
    let reference = format!("{}/models/llm", s.reg.host);

    // A certificate from a CA outside the trusted root, logged by the trusted Rekor.
    let rogue = TestSigstore::new();
    let digest = s.reg.push_image("models/llm", "rogue-ca").await;
    let mut layer = rogue.sign(payload(&reference, &digest), &id, false);
    let bundle = s.sigstore.bundle(
        &layer.payload,
        &layer.annotations[SIGNATURE_ANNOTATION],
        &layer.annotations[CERT_ANNOTATION],
    );
    layer
        .annotations
        .insert(BUNDLE_ANNOTATION.to_string(), bundle);
    push_signatures(&s.reg, "models/llm", &digest, &[layer]).await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(
        reason.contains("no signature with a trusted certificate"),
        "{reason}"
    );

    // A genuine SET, but for another signature than the one in the layer.
    let digest = s.reg.push_image("models/llm", "other-entry").await;
    let mut layer = s.sigstore.sign(payload(&reference, &digest), &id, false);
    let other = s.sigstore.sign(payload(&reference, &digest), &id, false);
    let bundle = s.sigstore.bundle(
        &other.payload,
        &other.annotations[SIGNATURE_ANNOTATION],
        &layer.annotations[CERT_ANNOTATION],
    );
    layer
        .annotations
        .insert(BUNDLE_ANNOTATION.to_string(), bundle);
    push_signatures(&s.reg, "models/llm", &digest, &[layer]).await;
    let reason = denied(v.check(&s.reg.pinned("models/llm", &digest)).await);
    assert!(
        reason.contains("signature or Rekor entry mismatch"),
        "{reason}"
    );
}
