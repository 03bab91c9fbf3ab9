//! The `signatures:` section of the webhook config.
//!
//! Every field has a documented default; unknown fields are rejected so a typo such as
//! `treshold` fails loudly instead of silently weakening the policy.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::SignatureError;

/// Default verification budget: well below the API server's 10 s default `timeoutSeconds`.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);
/// Default per-request registry timeout (connect and read).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Default lifetime of a cached "signed" result.
pub const DEFAULT_POSITIVE_TTL: Duration = Duration::from_secs(600);
/// Default lifetime of a cached "not signed" result (short, so a fresh signature is seen).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Default bound on cached results.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;
/// Default limit on the signature manifest size (cosign's are a few KiB).
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 256 * 1024;
/// Default limit on one signature layer (a SimpleSigning payload is < 1 KiB).
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 * 1024;
/// Default limit on signatures attached to one digest.
pub const DEFAULT_MAX_SIGNATURES: usize = 32;
/// Default limit on OCI referrers read per image (Sigstore bundles and the rest).
pub const DEFAULT_MAX_REFERRERS: usize = 16;
/// Default limit on a DSSE payload (a cosign sign v3 Statement is < 1 KiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 32 * 1024;

/// What to do with an image that no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoMatch {
    Deny,
    Allow,
    Warn,
}

/// What to do when the registry cannot be asked (down, slow, 5xx, auth failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    #[default]
    Deny,
    Allow,
}

/// `signatures:`: the whole section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignaturesConfig {
    /// Ordered rules; every rule whose `images` match must be satisfied.
    #[serde(default)]
    pub rules: Vec<SignatureRule>,
    /// Images matched by no rule. Default: `deny` when any rule exists, else `allow`.
    #[serde(default)]
    pub no_match: Option<NoMatch>,
    /// Total time allowed for one image's verification (default 5s).
    #[serde(default, with = "humantime_serde")]
    pub budget: Option<Duration>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Per-registry transport options (`insecure`, `caFile`).
    #[serde(default)]
    pub registries: Vec<RegistryConfig>,
}

/// One trust rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureRule {
    /// Name used in messages and metrics (default `rule-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Globs over normalised references without tag/digest, e.g.
    /// `registry.example.com/models/**` or `docker.io/library/nginx`.
    pub images: Vec<String>,
    /// Trusted public keys (PEM: ECDSA P-256/P-384, Ed25519, RSA).
    #[serde(default)]
    pub keys: Vec<KeySource>,
    /// How many distinct `keys` must have signed (default 1).
    #[serde(default)]
    pub threshold: Option<usize>,
    /// Keyless (Fulcio certificate + Rekor bundle) identities, verified offline.
    #[serde(default)]
    pub keyless: Option<KeylessConfig>,
    /// The transparency log: `none` (the default for keys: air-gapped key signing
    /// works), `optional` (a key-signed bundle's Rekor entry is verified when present),
    /// `required` (a key-signed bundle counts only with a verified Rekor entry; legacy
    /// `.sig` signatures do not count then). Keyless is always `required`.
    #[serde(default)]
    pub transparency: Option<Transparency>,
    /// `trusted_root.json` whose Rekor keys verify key-signed bundles' log entries
    /// (needed with `transparency: optional|required` on a key rule).
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Required attestations: signed (as the rule trusts signatures) in-toto Statements
    /// of a predicate type whose predicate satisfies a CEL policy.
    #[serde(default)]
    pub attestations: Vec<AttestationConfig>,
    #[serde(default)]
    pub on_error: OnError,
}

/// One required attestation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestationConfig {
    /// e.g. `https://slsa.dev/provenance/v1`, `https://cosign.sigstore.dev/attestation/vuln/v1`.
    pub predicate_type: String,
    /// A CEL expression over `predicate`, `predicateType`, `subject` and `now`.
    pub policy: String,
}

/// How a rule uses the transparency log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transparency {
    None,
    Optional,
    Required,
}

/// A public key, inline or from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySource {
    #[serde(default)]
    pub pem: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeylessConfig {
    /// Sigstore `trusted_root.json` (Fulcio CAs, Rekor and CT log keys).
    pub trusted_root: PathBuf,
    /// Accepted signer identities; any one is enough.
    pub identities: Vec<IdentityConfig>,
}

/// An accepted keyless identity: exact OIDC issuer plus exact or regex (anchored) subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    pub issuer: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default, rename = "subjectRegExp")]
    pub subject_regexp: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// Default 10m.
    #[serde(default, with = "humantime_serde")]
    pub positive_ttl: Option<Duration>,
    /// Default 30s.
    #[serde(default, with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Default 10000.
    #[serde(default)]
    pub max_entries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Default 256 KiB.
    #[serde(default)]
    pub max_manifest_bytes: Option<u64>,
    /// Default 64 KiB.
    #[serde(default)]
    pub max_layer_bytes: Option<u64>,
    /// Default 32.
    #[serde(default)]
    pub max_signatures: Option<usize>,
    /// Default 16: OCI referrers of one image read (referrers API or tag schema);
    /// more is a denial that says so (attachment floods, cosign CVE-2023-46737).
    #[serde(default)]
    pub max_referrers: Option<usize>,
    /// Default 32 KiB: the signed payload of a Sigstore bundle's DSSE envelope.
    #[serde(default)]
    pub max_payload_bytes: Option<u64>,
    /// Default 3s; connect and read timeout of each registry request.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host as it appears in image references, with port: `127.0.0.1:5000`.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// Extra PEM CA bundle trusted for this registry's TLS certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SignatureError {
    SignatureError::Config {
        field: field.into(),
        message: message.into(),
    }
}

impl SignaturesConfig {
    pub fn budget(&self) -> Duration {
        self.budget.unwrap_or(DEFAULT_BUDGET)
    }

    pub fn no_match(&self) -> NoMatch {
        self.no_match.unwrap_or(if self.rules.is_empty() {
            NoMatch::Allow
        } else {
            NoMatch::Deny
        })
    }

    /// Checks what serde cannot: every error names the offending field.
    pub fn validate(&self) -> Result<(), SignatureError> {
        let budget = self.budget();
        if budget.is_zero() || budget > Duration::from_secs(25) {
            return Err(invalid(
                "signatures.budget",
                "must be between 1ms and 25s and below the webhook's timeoutSeconds",
            ));
        }
        if self.limits.request_timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid("signatures.limits.requestTimeout", "must be > 0"));
        }
        if self.limits.max_signatures == Some(0) {
            return Err(invalid("signatures.limits.maxSignatures", "must be >= 1"));
        }
        if self.limits.max_referrers == Some(0) {
            return Err(invalid("signatures.limits.maxReferrers", "must be >= 1"));
        }
        if self.limits.max_payload_bytes == Some(0) {
            return Err(invalid("signatures.limits.maxPayloadBytes", "must be >= 1"));
        }
        if self.cache.max_entries == Some(0) {
            return Err(invalid(
                "signatures.cache.maxEntries",
                "must be >= 1 (use a short TTL to effectively disable caching)",
            ));
        }
        for (i, reg) in self.registries.iter().enumerate() {
            if reg.host.is_empty() || reg.host.contains('/') {
                return Err(invalid(
                    format!("signatures.registries[{i}].host"),
                    "must be a host[:port] such as `registry.example.com:5000`",
                ));
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("signatures.rules[{i}]"))?;
        }
        Ok(())
    }
}

impl SignatureRule {
    fn validate(&self, at: &str) -> Result<(), SignatureError> {
        if self.images.is_empty() {
            return Err(invalid(
                format!("{at}.images"),
                "must list at least one glob",
            ));
        }
        for (j, glob) in self.images.iter().enumerate() {
            let first = glob.split('/').next().unwrap_or_default();
            let hostish = first.contains(['.', ':', '*', '?', '[', '{']) || first == "localhost";
            if !hostish || !glob.contains('/') {
                return Err(invalid(
                    format!("{at}.images[{j}]"),
                    format!(
                        "`{glob}` is not a normalised reference: start with the registry \
                         host, e.g. `docker.io/library/nginx` or `registry.example.com/models/**`"
                    ),
                ));
            }
        }
        if self.keys.is_empty() && self.keyless.is_none() {
            return Err(invalid(
                at.to_string(),
                "needs `keys` or `keyless` (a rule that trusts nobody would deny everything)",
            ));
        }
        for (j, key) in self.keys.iter().enumerate() {
            if key.pem.is_some() == key.file.is_some() {
                return Err(invalid(
                    format!("{at}.keys[{j}]"),
                    "set exactly one of `pem` or `file`",
                ));
            }
        }
        if let Some(k) = self.threshold {
            if k == 0 || k > self.keys.len() {
                return Err(invalid(
                    format!("{at}.threshold"),
                    format!(
                        "must be between 1 and the number of keys ({})",
                        self.keys.len()
                    ),
                ));
            }
        }
        match (self.transparency, &self.trusted_root) {
            (Some(mode), _) if self.keyless.is_some() && mode != Transparency::Required => {
                return Err(invalid(
                    format!("{at}.transparency"),
                    "a keyless rule needs the log: the certificate is checked at the time Rekor \
                     signed, so it must be `required` (the default)",
                ))
            }
            (Some(Transparency::Optional | Transparency::Required), None)
                if self.keyless.is_none() =>
            {
                return Err(invalid(
                    format!("{at}.trustedRoot"),
                    "is needed to verify log entries (the Rekor keys of a trusted_root.json)",
                ))
            }
            (None | Some(Transparency::None), Some(_)) if self.keyless.is_none() => {
                return Err(invalid(
                    format!("{at}.trustedRoot"),
                    "is only read with `transparency: optional` or `required`",
                ))
            }
            _ => {}
        }
        for (j, attestation) in self.attestations.iter().enumerate() {
            if attestation.predicate_type.trim().is_empty() {
                return Err(invalid(
                    format!("{at}.attestations[{j}].predicateType"),
                    "must name a predicate type",
                ));
            }
            super::attestations::Requirement::compile(attestation)
                .map_err(|e| invalid(format!("{at}.attestations[{j}].policy"), e))?;
        }
        if let Some(keyless) = &self.keyless {
            if keyless.identities.is_empty() {
                return Err(invalid(
                    format!("{at}.keyless.identities"),
                    "must list at least one issuer/subject",
                ));
            }
            for (j, id) in keyless.identities.iter().enumerate() {
                if id.subject.is_some() == id.subject_regexp.is_some() {
                    return Err(invalid(
                        format!("{at}.keyless.identities[{j}]"),
                        "set exactly one of `subject` or `subjectRegExp`",
                    ));
                }
                if id.issuer.is_empty() {
                    return Err(invalid(
                        format!("{at}.keyless.identities[{j}].issuer"),
                        "must not be empty",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SignaturesConfig, String> {
        serde_saphyr::from_str::<SignaturesConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply() {
        let c = parse("rules: []").expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.budget(), DEFAULT_BUDGET);
        assert_eq!(c.no_match(), NoMatch::Allow);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse("rules:\n- images: [a.io/x]\n  treshold: 1\n").expect_err("typo");
        assert!(err.contains("treshold"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let c = parse("rules:\n- images: [nginx]\n  keys: [{pem: x}]\n").expect("parses");
        let err = c.validate().expect_err("not normalised").to_string();
        assert!(err.contains("signatures.rules[0].images[0]"), "{err}");
        assert!(err.contains("docker.io/library/nginx"), "{err}");

        let c = parse("rules:\n- images: [a.io/x]\n  keys: [{pem: x}]\n  threshold: 2\n")
            .expect("parses");
        let err = c.validate().expect_err("threshold too high").to_string();
        assert!(err.contains("signatures.rules[0].threshold"), "{err}");

        let c = parse("rules:\n- images: [a.io/x]\n").expect("parses");
        assert!(c.validate().is_err(), "a rule without keys or keyless");
        let errors = [
            (
                "rules: [{images: [r.io/**], keyless: {trustedRoot: /x, identities: [{issuer: i, subject: s}]}, transparency: optional}]",
                "signatures.rules[0].transparency",
            ),
            (
                "rules: [{images: [r.io/**], keys: [{pem: k}], transparency: required}]",
                "signatures.rules[0].trustedRoot",
            ),
            (
                "rules: [{images: [r.io/**], keys: [{pem: k}], trustedRoot: /x}]",
                "signatures.rules[0].trustedRoot",
            ),
        ];
        for (yaml, field) in errors {
            let err = parse(yaml).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn no_match_defaults_to_deny_when_rules_exist() {
        let c = parse("rules:\n- images: [a.io/x]\n  keys: [{pem: x}]\n").expect("parses");
        assert_eq!(c.no_match(), NoMatch::Deny);
        let c = parse("noMatch: warn\nbudget: 2s\nrules: []\n").expect("parses");
        assert_eq!(c.no_match(), NoMatch::Warn);
        assert_eq!(c.budget(), Duration::from_secs(2));
    }
}
