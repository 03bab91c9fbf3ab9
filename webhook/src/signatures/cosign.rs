//! One rule's trust (keys with a threshold, keyless identities) and its check of the
//! cosign signature layers of a digest.
//!
//! sigstore-rs downloads the layers and, for keyless, verifies each certificate's chain
//! against the Fulcio CAs and the Rekor bundle's SET offline. It does not check that the
//! certificate's key made the signature, nor that the bundle logs *this* signature, so
//! those two checks are done here, with sigstore's key types.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use regex::Regex;
use sha2::{Digest as _, Sha256};
use sigstore::cosign::bundle_content::BundleContent;
use sigstore::cosign::signature_layers::CertificateSubject;
use sigstore::cosign::{ClientBuilder, CosignCapabilities, SignatureLayer};
use sigstore::crypto::{CosignVerificationKey, Signature};
use sigstore::registry::OciReference;
use sigstore::trust::ManualTrustRoot;

use super::attestations::Requirement;
use super::bundle::{Keyless, KeylessIdentity, LogPolicy, Statement};
use super::config::{SignatureRule, Transparency};
use super::registry::Transport;
use super::{trust_root, SignatureError};

/// Annotation holding a layer's base64 signature, as cosign writes it.
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// An accepted keyless identity.
#[derive(Debug)]
struct Identity {
    issuer: String,
    subject: SubjectMatch,
}

#[derive(Debug)]
enum SubjectMatch {
    Exact(String),
    Regex(Regex),
}

impl SubjectMatch {
    fn matches(&self, subject: &str) -> bool {
        match self {
            Self::Exact(s) => s == subject,
            Self::Regex(r) => r.is_match(subject),
        }
    }
}

/// What a rule trusts, plus a pool of sigstore clients (they need `&mut` per call).
pub struct RuleTrust {
    pub name: String,
    keys: Vec<CosignVerificationKey>,
    threshold: usize,
    identities: Vec<Identity>,
    trust_root: Option<ManualTrustRoot<'static>>,
    pool: Mutex<HashMap<String, Vec<sigstore::cosign::Client>>>,
    /// Keyless Sigstore bundles: their verifier and the accepted identities.
    keyless: Option<(Keyless, Vec<KeylessIdentity>)>,
    /// `transparency: optional|required` of a key rule: whether a log entry is
    /// required, and the Rekor keys and the rule keys' DER to check it with.
    key_log: Option<KeyLog>,
    /// Required attestations, compiled.
    attestations: Vec<Requirement>,
}

/// Who signed an attested Statement.
pub enum Signers {
    /// These of the rule's keys (indices).
    Keys(Vec<usize>),
    /// A trusted keyless identity.
    Keyless,
}

/// What a key rule's log check needs.
pub struct KeyLog {
    pub required: bool,
    pub rekor_keys: std::collections::BTreeMap<String, CosignVerificationKey>,
    pub key_ders: Vec<Vec<u8>>,
}

fn key_error(field: String, message: String) -> SignatureError {
    SignatureError::Config { field, message }
}

impl RuleTrust {
    pub fn new(rule: &SignatureRule, index: usize) -> Result<Self, SignatureError> {
        let at = format!("signatures.rules[{index}]");
        let mut keys = Vec::new();
        let mut key_ders = Vec::new();
        for (j, source) in rule.keys.iter().enumerate() {
            let field = format!("{at}.keys[{j}]");
            let pem = match (&source.pem, &source.file) {
                (Some(pem), _) => pem.as_bytes().to_vec(),
                (None, Some(path)) => std::fs::read(path).map_err(|e| {
                    key_error(
                        format!("{field}.file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?,
                (None, None) => return Err(key_error(field, "set `pem` or `file`".into())),
            };
            key_ders.push(super::bundle::pem_der(&pem).unwrap_or_default());
            let key = CosignVerificationKey::try_from_pem(&pem).map_err(|e| {
                key_error(
                    field.clone(),
                    format!("not a PEM public key (ECDSA P-256/P-384, Ed25519, RSA): {e}"),
                )
            })?;
            keys.push(key);
        }
        let mut identities = Vec::new();
        let mut trust_root = None;
        if let Some(keyless) = &rule.keyless {
            trust_root = Some(trust_root::load(
                &keyless.trusted_root,
                &format!("{at}.keyless.trustedRoot"),
            )?);
            for (j, id) in keyless.identities.iter().enumerate() {
                let subject = match (&id.subject, &id.subject_regexp) {
                    (Some(s), _) => SubjectMatch::Exact(s.clone()),
                    (None, Some(re)) => SubjectMatch::Regex(
                        // Anchored: `.*@example.com` must not match `x@example.com.evil`.
                        Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                            key_error(
                                format!("{at}.keyless.identities[{j}].subjectRegExp"),
                                e.to_string(),
                            )
                        })?,
                    ),
                    (None, None) => {
                        return Err(key_error(
                            format!("{at}.keyless.identities[{j}]"),
                            "set `subject` or `subjectRegExp`".into(),
                        ))
                    }
                };
                identities.push(Identity {
                    issuer: id.issuer.clone(),
                    subject,
                });
            }
        }
        let keyless = match &trust_root {
            Some(root) => {
                let verifier = Keyless::new(root)
                    .map_err(|message| key_error(format!("{at}.keyless.trustedRoot"), message))?;
                let accepted = identities
                    .iter()
                    .map(|id| KeylessIdentity {
                        issuer: id.issuer.clone(),
                        subject: match &id.subject {
                            SubjectMatch::Exact(s) => Ok(s.clone()),
                            SubjectMatch::Regex(r) => Err(r.clone()),
                        },
                    })
                    .collect();
                Some((verifier, accepted))
            }
            None => None,
        };
        let key_log = match (rule.transparency, &rule.trusted_root) {
            (Some(mode @ (Transparency::Optional | Transparency::Required)), Some(path)) => {
                let root = trust_root::load_log_keys(path, &format!("{at}.trustedRoot"))?;
                let mut rekor_keys = std::collections::BTreeMap::new();
                for (id, der) in &root.rekor_keys {
                    let key = CosignVerificationKey::try_from_der(der).map_err(|e| {
                        key_error(format!("{at}.trustedRoot"), format!("tlogs key {id}: {e}"))
                    })?;
                    rekor_keys.insert(id.clone(), key);
                }
                Some(KeyLog {
                    required: mode == Transparency::Required,
                    rekor_keys,
                    key_ders,
                })
            }
            _ => None,
        };
        let trust = Self {
            name: rule.name.clone().unwrap_or_else(|| format!("rule-{index}")),
            threshold: rule.threshold.unwrap_or(1),
            keys,
            identities,
            trust_root,
            pool: Mutex::new(HashMap::new()),
            keyless,
            key_log,
            attestations: rule
                .attestations
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    Requirement::compile(a)
                        .map_err(|e| key_error(format!("{at}.attestations[{j}].policy"), e))
                })
                .collect::<Result<_, _>>()?,
        };
        // Fail at start-up, not at the first admission, on a trust root sigstore rejects.
        if trust.needs_sigstore() {
            trust
                .build_client(&Transport::default())
                .map_err(|message| key_error(format!("{at}.keyless.trustedRoot"), message))?;
        }
        Ok(trust)
    }

    fn build_client(&self, transport: &Transport) -> Result<sigstore::cosign::Client, String> {
        let config = transport.sigstore_config();
        let mut builder = ClientBuilder::default().with_oci_client_config(config);
        if let Some(root) = &self.trust_root {
            builder = builder
                .with_trust_repository(root)
                .map_err(|e| e.to_string())?;
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// The rule's trusted keys, in config order (`keys[i]` in messages).
    pub fn keys(&self) -> &[CosignVerificationKey] {
        &self.keys
    }

    /// How many distinct trusted keys must have signed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The rule's required attestations.
    pub fn attestations(&self) -> &[Requirement] {
        &self.attestations
    }

    /// Whether the attested Statements (with who signed each) meet every requirement
    /// for `name@digest` at `now`: that many distinct trusted keys (k of n, as for
    /// signatures) or any trusted keyless identity attested, with a passing policy.
    pub fn check_attestations(
        &self,
        attested: &[(Signers, Statement)],
        name: &str,
        digest: &str,
        now: std::time::SystemTime,
    ) -> Result<(), String> {
        for (j, requirement) in self.attestations.iter().enumerate() {
            let of_type: Vec<_> = attested
                .iter()
                .filter(|(_, s)| s.predicate_type == requirement.predicate_type)
                .collect();
            if of_type.is_empty() {
                return Err(format!(
                    "no trusted attestation of type {} (attestations[{j}]): the image carries none signed by this rule's signers",
                    requirement.predicate_type
                ));
            }
            let mut keys = std::collections::BTreeSet::new();
            let mut keyless = false;
            let mut failures = Vec::new();
            for (signers, statement) in of_type {
                match requirement.admits(&statement.predicate, name, digest, now) {
                    Ok(()) => match signers {
                        Signers::Keys(k) => keys.extend(k.iter().copied()),
                        Signers::Keyless => keyless = true,
                    },
                    Err(why) => failures.push(why),
                }
            }
            let by_keys = !self.keys.is_empty() && keys.len() >= self.threshold;
            if !(keyless || by_keys) {
                let mut why = format!(
                    "attestation {} (attestations[{j}])",
                    requirement.predicate_type
                );
                if failures.is_empty() {
                    why.push_str(&format!(
                        ": {} of the required {} trusted key(s) attested",
                        keys.len(),
                        self.threshold
                    ));
                } else {
                    why.push_str(&format!(": {}", failures.join("; ")));
                }
                return Err(why);
            }
        }
        Ok(())
    }

    /// A key rule's log policy for bundles (`transparency: optional|required`).
    pub fn log_policy(&self) -> Option<LogPolicy<'_>> {
        self.key_log.as_ref().map(|l| LogPolicy {
            required: l.required,
            rekor_keys: &l.rekor_keys,
            key_ders: &l.key_ders,
        })
    }

    /// Whether legacy `.sig` signatures count (not with `transparency: required`, whose
    /// log entries only bundles carry in a form checked here).
    pub fn legacy_counts(&self) -> bool {
        !self.key_log.as_ref().is_some_and(|l| l.required)
    }

    /// The keyless bundle verifier and accepted identities, for keyless rules.
    pub fn keyless(&self) -> Option<&(Keyless, Vec<KeylessIdentity>)> {
        self.keyless.as_ref()
    }

    /// Keyless needs sigstore's certificate and bundle checks; keys alone do not.
    pub fn needs_sigstore(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Downloads and pre-verifies (chain, SET) the signature layers of `digest`.
    pub async fn fetch_layers(
        &self,
        image: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        transport: &Transport,
    ) -> Result<Vec<SignatureLayer>, SignatureError> {
        let registry = image.registry().to_string();
        let pooled = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&registry).and_then(Vec::pop));
        let mut client = match pooled {
            Some(c) => c,
            None => self
                .build_client(transport)
                .map_err(|message| SignatureError::Registry {
                    registry: registry.clone(),
                    kind: "client",
                    message,
                })?,
        };
        let source = OciReference::with_digest(
            registry.clone(),
            image.repository().to_string(),
            digest.to_string(),
        );
        let result = client.trusted_signature_layers(&auth.into(), &source).await;
        if let Ok(mut pool) = self.pool.lock() {
            pool.entry(registry.clone()).or_default().push(client);
        }
        result.map_err(|e| SignatureError::Registry {
            registry,
            kind: "protocol",
            message: e.to_string(),
        })
    }

    /// `Ok(who)` when the layers satisfy the rule, `Err(why not)` otherwise.
    /// `declared` is the number of layers in the signature manifest; `in_bundles` the
    /// keys that already signed a Sigstore bundle of this digest (k of n counts each
    /// trusted key once, whatever the format).
    pub fn evaluate(
        &self,
        layers: &[SignatureLayer],
        digest: &str,
        declared: usize,
        in_bundles: &std::collections::BTreeSet<usize>,
    ) -> Result<String, String> {
        // The payload must name the digest the pod runs: a registry cannot swap digests.
        let layers: Vec<&SignatureLayer> = layers
            .iter()
            .filter(|l| l.simple_signing.critical.image.docker_manifest_digest == digest)
            .collect();
        if layers.is_empty() && in_bundles.is_empty() {
            return Err(format!(
                "none of the {declared} signature layer(s) is valid for {digest} (payload for \
                 another digest, Rekor bundle from an untrusted log, or malformed layer)"
            ));
        }
        let signed_keys: Vec<usize> = (0..self.keys.len())
            .filter(|&k| {
                in_bundles.contains(&k) || layers.iter().any(|l| signed_by(l, &self.keys[k]))
            })
            .collect();
        if !self.keys.is_empty() && signed_keys.len() >= self.threshold {
            let names: Vec<String> = signed_keys.iter().map(|k| format!("keys[{k}]")).collect();
            return Ok(format!("signed by {}", names.join(", ")));
        }
        let mut seen = Vec::new();
        for layer in &layers {
            let Some(cert) = &layer.certificate_signature else {
                continue;
            };
            let subject = match &cert.subject {
                CertificateSubject::Email(s) | CertificateSubject::Uri(s) => s.as_str(),
            };
            let issuer = cert.issuer.as_deref().unwrap_or("<none>");
            if !signed_by(layer, &cert.verification_key) || !logs_this_signature(layer) {
                seen.push(format!(
                    "{subject} ({issuer}): signature or Rekor entry mismatch"
                ));
                continue;
            }
            let accepted = self
                .identities
                .iter()
                .any(|id| id.issuer == issuer && id.subject.matches(subject));
            if accepted {
                return Ok(format!("signed keyless by {subject} ({issuer})"));
            }
            seen.push(format!("{subject} ({issuer})"));
        }
        let mut why = Vec::new();
        if !self.keys.is_empty() {
            why.push(format!(
                "{} of the required {} trusted key(s) signed",
                signed_keys.len(),
                self.threshold
            ));
        }
        if !self.identities.is_empty() {
            why.push(if seen.is_empty() {
                "no signature with a trusted certificate and Rekor bundle".to_string()
            } else {
                format!("untrusted keyless identities: {}", seen.join("; "))
            });
        }
        Err(why.join("; "))
    }
}

/// Signature layers for key verification from layers downloaded under our limits:
/// payload, signature annotation, and nothing else (no certificate is trusted here).
pub fn key_layers(downloaded: Vec<(OciDescriptor, Vec<u8>)>) -> Vec<SignatureLayer> {
    downloaded
        .into_iter()
        .filter_map(|(descriptor, data)| {
            let simple_signing = serde_json::from_slice(&data).ok()?;
            let signature = descriptor
                .annotations
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .cloned()?;
            Some(SignatureLayer {
                simple_signing,
                oci_digest: descriptor.digest,
                certificate_signature: None,
                bundle: None,
                signature: Some(signature),
                raw_data: data,
            })
        })
        .collect()
}

fn signed_by(layer: &SignatureLayer, key: &CosignVerificationKey) -> bool {
    layer.signature.as_ref().is_some_and(|sig| {
        key.verify_signature(Signature::Base64Encoded(sig.as_bytes()), &layer.raw_data)
            .is_ok()
    })
}

/// The Rekor entry (hashedrekord) in the bundle must be for this payload and signature,
/// else a valid bundle of another signature could vouch for this one.
fn logs_this_signature(layer: &SignatureLayer) -> bool {
    let Some(BundleContent::RekorBundle(bundle)) = &layer.bundle else {
        // Sigstore bundles (OCI referrers) are checked entry-to-signature by sigstore.
        return matches!(layer.bundle, Some(BundleContent::SigstoreBundle(_)));
    };
    let Ok(body) = base64::engine::general_purpose::STANDARD.decode(&bundle.payload.body) else {
        return false;
    };
    let Ok(entry) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return false;
    };
    let spec = &entry["spec"];
    let hash = hex::encode(Sha256::digest(&layer.raw_data));
    spec["data"]["hash"]["value"].as_str() == Some(hash.as_str())
        && spec["signature"]["content"].as_str() == layer.signature.as_deref()
}
