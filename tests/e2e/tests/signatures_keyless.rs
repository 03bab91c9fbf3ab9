//! Keyless (Fulcio certificate + Rekor bundle) verification, fully offline, against a
//! real `docker-registry` behind TLS (CA made in the test) with htpasswd basic auth.

use guardrail_e2e::registry::cosign::{
    payload, push_signatures, sign_with_keys, KeySigner, SigLayer, BUNDLE_ANNOTATION,
    CERT_ANNOTATION, SIGNATURE_ANNOTATION,
};
use guardrail_e2e::registry::keyless::{Identity, TestSigstore};
use guardrail_e2e::registry::{metric, verifier, write, RegistryOptions, TestCa, TestRegistry};
use guardrail_webhook::signatures::{ImageVerdict, SignatureVerifier};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str =
    "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/main";
/// The release workflow: what the policies below trust.
const RELEASE: Identity<'static> = Identity {
    subject: WORKFLOW,
    issuer: ISSUER,
};

struct Setup {
    reg: TestRegistry,
    sigstore: TestSigstore,
    auth_file: std::path::PathBuf,
}

/// A TLS registry with basic auth (its CA made here) and the docker config for it.
fn setup() -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new();
    let reg = TestRegistry::start(RegistryOptions {
        tls: Some(&ca),
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

/// A registry and a verifier of keyless rules with `identities` (YAML list items).
fn keyless_verifier(identities: &str) -> (Setup, SignatureVerifier) {
    let s = setup();
    let (v, _) = verifier(&config(&s, identities), Some(&s.auth_file));
    (s, v)
}

/// Pushes image `tag` with the one signature layer `sign` makes from its cosign
/// payload; returns the pinned reference.
async fn push_with(
    s: &Setup,
    tag: &str,
    sign: impl FnOnce(Vec<u8>) -> SigLayer,
) -> oci_client::Reference {
    let digest = s.reg.push_image("models/llm", tag).await;
    let layer = sign(payload(&format!("{}/models/llm", s.reg.host), &digest));
    push_signatures(&s.reg, "models/llm", &digest, &[layer]).await;
    s.reg.pinned("models/llm", &digest)
}

/// An image signed by the test's trusted Sigstore as `identity`.
async fn push_keyless(
    s: &Setup,
    tag: &str,
    identity: &Identity<'_>,
    with_bundle: bool,
) -> oci_client::Reference {
    push_with(s, tag, |p| s.sigstore.sign(p, identity, with_bundle)).await
}

/// `layer` with a Rekor bundle logged by `log` for the payload and signature of
/// `entry` (default: `layer` itself) and the certificate of `layer`.
fn with_bundle(log: &TestSigstore, mut layer: SigLayer, entry: Option<&SigLayer>) -> SigLayer {
    let entry = entry.unwrap_or(&layer);
    let bundle = log.bundle(
        &entry.payload,
        &entry.annotations[SIGNATURE_ANNOTATION],
        &layer.annotations[CERT_ANNOTATION],
    );
    layer
        .annotations
        .insert(BUNDLE_ANNOTATION.to_string(), bundle);
    layer
}

fn denied(verdict: ImageVerdict) -> String {
    match verdict {
        ImageVerdict::Denied { reason } | ImageVerdict::Unverifiable { reason } => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn release_identity() -> String {
    format!("    - issuer: {ISSUER}\n      subject: \"{WORKFLOW}\"\n")
}

#[tokio::test]
async fn keyless_identities_decide() {
    let (s, v) = keyless_verifier(&release_identity());

    let good = push_keyless(&s, "good", &RELEASE, true).await;
    assert_eq!(v.check(&good).await, ImageVerdict::Allowed);

    let other_workflow = "https://github.com/acme/models/.github/workflows/dev.yml@refs/heads/main";
    let other = Identity {
        subject: other_workflow,
        issuer: ISSUER,
    };
    let img = push_keyless(&s, "subject", &other, true).await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains(&format!("untrusted keyless identities: {other_workflow}")),
        "{reason}"
    );

    let evil_issuer = Identity {
        subject: WORKFLOW,
        issuer: "https://evil.example",
    };
    let img = push_keyless(&s, "issuer", &evil_issuer, true).await;
    let reason = denied(v.check(&img).await);
    assert!(reason.contains("(https://evil.example)"), "{reason}");

    let img = push_keyless(&s, "nobundle", &RELEASE, false).await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains("no signature with a trusted certificate and Rekor bundle"),
        "{reason}"
    );
}

#[tokio::test]
async fn certificates_from_another_ca_or_bundles_from_another_log_deny() {
    let (s, v) = keyless_verifier(&format!(
        "    - issuer: {ISSUER}\n      subjectRegExp: \"https://github.com/acme/.*\"\n"
    ));

    // Regex identities are anchored: a look-alike prefix does not pass.
    let img = push_keyless(&s, "regex-ok", &RELEASE, true).await;
    assert_eq!(v.check(&img).await, ImageVerdict::Allowed);
    let evil = Identity {
        subject: "https://evil.io/?https://github.com/acme/x",
        issuer: ISSUER,
    };
    let img = push_keyless(&s, "regex-bad", &evil, true).await;
    denied(v.check(&img).await);

    // Same identity, but a Sigstore the trusted root does not list.
    let rogue = TestSigstore::new();
    let img = push_with(&s, "rogue", |p| rogue.sign(p, &RELEASE, true)).await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains("Rekor bundle from an untrusted log"),
        "{reason}"
    );
}

#[tokio::test]
async fn basic_auth_registry_needs_the_docker_config() {
    let s = setup();
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
    let (s, v) = keyless_verifier(&release_identity());

    // A certificate from a CA outside the trusted root, logged by the trusted Rekor.
    let rogue = TestSigstore::new();
    let img = push_with(&s, "rogue-ca", |p| {
        with_bundle(&s.sigstore, rogue.sign(p, &RELEASE, false), None)
    })
    .await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains("no signature with a trusted certificate"),
        "{reason}"
    );

    // A genuine SET, but for another signature than the one in the layer.
    let img = push_with(&s, "other-entry", |p| {
        let other = s.sigstore.sign(p.clone(), &RELEASE, false);
        with_bundle(
            &s.sigstore,
            s.sigstore.sign(p, &RELEASE, false),
            Some(&other),
        )
    })
    .await;
    let reason = denied(v.check(&img).await);
    assert!(
        reason.contains("signature or Rekor entry mismatch"),
        "{reason}"
    );
}
