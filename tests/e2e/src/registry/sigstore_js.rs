//! The independent Sigstore signer of the tests: sigstore-js (`@sigstore/sign` builds a
//! key-signed DSSE bundle, `@sigstore/oci` attaches it as an OCI referrer), driven by
//! `tests/e2e/signers/sigstore-bundle.cjs` and installed by tests/setup/sigstore-js.sh.

use std::{path::PathBuf, process::Command};

use oci_client::secrets::RegistryAuth;
use serde_json::json;

use super::{cosign::KeySigner, TestRegistry};

/// sigstore-js's `node_modules` (`GUARDRAIL_SIGSTORE_JS`, default in the cache).
pub fn modules() -> PathBuf {
    let path = std::env::var_os("GUARDRAIL_SIGSTORE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/guardrail/sigstore-js/node_modules")
        });
    assert!(
        path.join("@sigstore/oci").exists(),
        "sigstore-js ({}) is missing: run tests/run.sh (tests/setup/sigstore-js.sh installs it)",
        path.display()
    );
    path
}

/// A keyless identity of the mock Fulcio's certificates.
pub struct KeylessSigning<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    /// Where the mock's trusted_root.json is written.
    pub trusted_root: &'a std::path::Path,
    /// Leave out the Rekor entry.
    pub no_tlog: bool,
    /// Change the entry's integrated time after its SET was signed.
    pub forge_integrated_time: bool,
}

/// Attaches to `digest` of `repo` a keyless bundle: a certificate from a mock Fulcio for
/// `signing`'s identity, logged in a mock Rekor (both @sigstore/mock, in the signer's
/// process), signing a Statement that names `subject_digest`.
pub fn attach_keyless_bundle(
    reg: &TestRegistry,
    repo: &str,
    digest: &str,
    subject_digest: &str,
    signing: &KeylessSigning<'_>,
) {
    let RegistryAuth::Basic(username, password) = reg.auth() else {
        panic!("attach_keyless_bundle needs a registry with basic auth");
    };
    run(
        "signers/sigstore-keyless.cjs",
        json!({
            "registry": reg.host, "repository": repo, "digest": digest, "subjectDigest": subject_digest,
            "username": username, "password": password, "issuer": signing.issuer,
            "subject": signing.subject, "trustedRoot": signing.trusted_root, "noTlog": signing.no_tlog,
            "forgeIntegratedTime": signing.forge_integrated_time,
        }),
    );
}

fn run(script: &str, options: serde_json::Value) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let output = Command::new("node")
        .arg(script)
        .arg(options.to_string())
        .env("NODE_PATH", modules())
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "sigstore-js: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Attaches to `digest` of `repo` a bundle signed by `key` whose Statement names
/// `subject` (normally the same digest). The registry must ask for credentials
/// (basic auth): @sigstore/oci pushes only after an auth challenge.
pub fn attach_bundle(reg: &TestRegistry, repo: &str, digest: &str, key: &KeySigner, subject: &str) {
    attach_logged_bundle(reg, repo, digest, key, subject, None, LogForm::V1, false);
}

/// Attaches an attestation: a bundle signed by `key` of a Statement with
/// `predicate_type` and `predicate` for `digest`.
pub fn attach_attestation(
    reg: &TestRegistry,
    repo: &str,
    digest: &str,
    key: &KeySigner,
    predicate_type: &str,
    predicate: &serde_json::Value,
) {
    let RegistryAuth::Basic(username, password) = reg.auth() else {
        panic!("attach_attestation needs a registry with basic auth");
    };
    run(
        "signers/sigstore-bundle.cjs",
        json!({
            "registry": reg.host, "repository": repo, "digest": digest,
            "keyPem": key.private_pem(), "username": username, "password": password,
            "predicateType": predicate_type, "predicate": predicate,
        }),
    );
}

/// How a logged bundle's entry looks (sigstore-bundle.cjs's `tlogForm`).
#[derive(Clone, Copy, Debug)]
pub enum LogForm {
    /// Rekor v1: a Signed Entry Timestamp and an inclusion proof.
    V1,
    /// Rekor v1 with the inclusion proof only.
    V1ProofOnly,
    /// Rekor v2 (rekor-tiles): dsse 0.0.2 body, inclusion proof, no SET.
    V2,
    /// Rekor v2 with a wrong audit path (sigstore-js's verifier refuses it too).
    V2BrokenProof,
}

impl LogForm {
    fn name(self) -> &'static str {
        match self {
            LogForm::V1 => "v1",
            LogForm::V1ProofOnly => "v1-proof",
            LogForm::V2 => "v2",
            LogForm::V2BrokenProof => "v2-broken",
        }
    }
}

/// [`attach_bundle`], logged in a mock Rekor whose trusted_root.json is written to
/// `log_root`, as `form` (with `other_key`, the entry names another key than the
/// signer's).
#[allow(clippy::too_many_arguments)]
pub fn attach_logged_bundle(
    reg: &TestRegistry,
    repo: &str,
    digest: &str,
    key: &KeySigner,
    subject: &str,
    log_root: Option<&std::path::Path>,
    form: LogForm,
    other_key: bool,
) {
    let RegistryAuth::Basic(username, password) = reg.auth() else {
        panic!("attach_bundle needs a registry with basic auth (RegistryOptions::basic_auth)");
    };
    run(
        "signers/sigstore-bundle.cjs",
        json!({
            "registry": reg.host, "repository": repo, "digest": digest, "subjectDigest": subject,
            "keyPem": key.private_pem(), "username": username, "password": password,
            "tlogTrustedRoot": log_root, "tlogOtherKey": other_key, "tlogForm": form.name(),
        }),
    );
}
