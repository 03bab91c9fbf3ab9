//! Sigstore bundles (`application/vnd.dev.sigstore.bundle.v0.3+json`) as `cosign sign` v3
//! attaches them: a DSSE envelope of an in-toto Statement whose predicate type is
//! `https://sigstore.dev/cosign/sign/v1` and whose subject is the image digest
//! (cosign `specs/BUNDLE_SPEC.md`).
//!
//! sigstore-rs 0.15 verifies only certificate-based bundles with one Rekor entry, so
//! key-signed bundles are verified here with the same primitives it uses (sigstore's
//! `CosignVerificationKey`): the signature over the DSSE pre-authentication encoding of
//! the exact payload (DSSE `protocol.md`), then the Statement's type, predicate type
//! and subject digest against the digest the pod runs.

use base64::Engine as _;
use serde::Deserialize;
use sigstore::crypto::{CosignVerificationKey, Signature};

use super::tlog;

/// Media type of a Sigstore bundle v0.3 (layer and artifact type of the referrer).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The predicate type of `cosign sign` v3 signatures.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    /// A key hint: the bundle was signed by a key, not a certificate.
    public_key: Option<serde_json::Value>,
    certificate: Option<serde_json::Value>,
    x509_certificate_chain: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// A signed in-toto Statement: a signature (`cosign/sign/v1`) or an attestation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn is_signature(&self) -> bool {
        self.predicate_type == COSIGN_SIGN_PREDICATE
    }
}

#[derive(Debug, Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// A cosign legacy attestation layer (`sha256-<hex>.att`): a DSSE envelope signed by
/// `keys`; which of them signed, and the Statement for `digest`.
pub fn legacy_attestation(
    raw: &[u8],
    digest: &str,
    keys: &[CosignVerificationKey],
    max_payload_bytes: u64,
) -> Result<(Vec<usize>, Statement), String> {
    let envelope: Envelope =
        serde_json::from_slice(raw).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let (signed, statement, _) = verify_envelope(&envelope, digest, keys, max_payload_bytes)?;
    Ok((signed, statement))
}

/// The envelope's signatures by `keys` over the exact payload, then the Statement's
/// type and its subject `digest`: (keys that signed, Statement, payload bytes).
fn verify_envelope(
    envelope: &Envelope,
    digest: &str,
    keys: &[CosignVerificationKey],
    max_payload_bytes: u64,
) -> Result<(Vec<usize>, Statement, Vec<u8>), String> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "DSSE payload type {:?} is not {IN_TOTO_PAYLOAD_TYPE}",
            envelope.payload_type
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    if envelope.payload.len() as u64 > max_payload_bytes.saturating_mul(4) / 3 + 4 {
        return Err(format!(
            "DSSE payload is larger than {max_payload_bytes} bytes (signatures.limits.maxPayloadBytes)"
        ));
    }
    let payload = b64
        .decode(&envelope.payload)
        .map_err(|e| format!("DSSE payload is not base64: {e}"))?;
    let message = pae(&envelope.payload_type, &payload);
    // The signature first: nothing in an unauthenticated payload is believed.
    let signed: Vec<usize> = (0..keys.len())
        .filter(|&k| {
            envelope.signatures.iter().any(|s| {
                b64.decode(&s.sig).is_ok_and(|sig| {
                    keys[k]
                        .verify_signature(Signature::Raw(&sig), &message)
                        .is_ok()
                })
            })
        })
        .collect();
    if signed.is_empty() {
        return Err("not signed by a trusted key".into());
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| format!("signed payload is not an in-toto Statement: {e}"))?;
    if !STATEMENT_TYPES.contains(&statement.type_.as_str()) {
        return Err(format!("signed payload has _type {:?}", statement.type_));
    }
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let names_digest = statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|d| d.eq_ignore_ascii_case(hex))
    });
    if !names_digest {
        return Err(format!(
            "signed subject is not {digest} (a signature of another image)"
        ));
    }
    Ok((signed, statement, payload))
}

/// DSSE's pre-authentication encoding: what the signature is over.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Which of `keys` signed this bundle's `cosign/sign/v1` Statement for `digest`.
pub fn keys_that_signed(
    raw: &[u8],
    digest: &str,
    keys: &[CosignVerificationKey],
    max_payload_bytes: u64,
    log: Option<&LogPolicy<'_>>,
) -> Result<Vec<usize>, String> {
    let (signed, statement) = verified_by_keys(raw, digest, keys, max_payload_bytes, log)?;
    if !statement.is_signature() {
        return Err(format!(
            "predicate type {:?} is an attestation, not a cosign signature ({COSIGN_SIGN_PREDICATE})",
            statement.predicate_type
        ));
    }
    Ok(signed)
}

/// Which of `keys` signed this bundle (indices) and the Statement they signed for
/// `digest`, whatever its predicate type; or why it is not that.
pub fn verified_by_keys(
    raw: &[u8],
    digest: &str,
    keys: &[CosignVerificationKey],
    max_payload_bytes: u64,
    log: Option<&LogPolicy<'_>>,
) -> Result<(Vec<usize>, Statement), String> {
    let bundle: Bundle =
        serde_json::from_slice(raw).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(format!(
            "bundle media type {:?} is not {BUNDLE_MEDIA_TYPE}",
            bundle.media_type
        ));
    }
    let material = &bundle.verification_material;
    if material.public_key.is_none() {
        let what = if material.certificate.is_some() || material.x509_certificate_chain.is_some() {
            "signed with a certificate (keyless), not a key"
        } else {
            "has no public key hint"
        };
        return Err(format!("bundle {what}"));
    }
    let envelope = bundle
        .dsse_envelope
        .ok_or("bundle holds a message signature, not the DSSE envelope cosign sign v3 writes")?;
    let (signed, statement, payload) = verify_envelope(&envelope, digest, keys, max_payload_bytes)?;
    if let Some(log) = log {
        check_key_log_entry(raw, &payload, &envelope.signatures, &signed, log)?;
    }
    Ok((signed, statement))
}

/// Keyless bundles: a Fulcio certificate and one Rekor v1 entry. sigstore-rs checks the
/// certificate chain at its issuance time, the embedded SCT against the CT log keys,
/// the identity policy, the signature with the certificate's key, that the log entry
/// is for this signature and payload, and that the certificate was valid at the entry's
/// integrated time; it does **not** verify the Signed Entry Timestamp (sigstore-rs#285),
/// so the integrated time it trusts is unauthenticated. That check is made here first,
/// with the Rekor key of the trusted root: the SET over the canonical JSON of the entry
/// (body, integratedTime, logID, logIndex), as cosign verifies it.
pub struct Keyless {
    verifier: sigstore::bundle::verify::Verifier,
    rekor_keys: std::collections::BTreeMap<String, CosignVerificationKey>,
}

/// An accepted identity: the OIDC issuer and the certificate's subject.
pub struct KeylessIdentity {
    pub issuer: String,
    pub subject: Result<String, regex::Regex>,
}

impl Keyless {
    pub fn new(root: &sigstore::trust::ManualTrustRoot<'static>) -> Result<Self, String> {
        let mut rekor_keys = std::collections::BTreeMap::new();
        for (id, der) in &root.rekor_keys {
            let key = CosignVerificationKey::try_from_der(der)
                .map_err(|e| format!("tlogs key {id}: {e}"))?;
            rekor_keys.insert(id.clone(), key);
        }
        let copy = sigstore::trust::ManualTrustRoot {
            fulcio_certs: root.fulcio_certs.clone(),
            rekor_keys: root.rekor_keys.clone(),
            ctfe_keys: root.ctfe_keys.clone(),
        };
        let verifier = sigstore::bundle::verify::Verifier::new(Default::default(), copy)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            verifier,
            rekor_keys,
        })
    }

    /// The Statement of a valid keyless bundle for `digest` by one of `identities`
    /// (signature or attestation), `Err(why not)` otherwise.
    pub async fn verify(
        &self,
        raw: &[u8],
        digest: &str,
        identities: &[KeylessIdentity],
        max_payload_bytes: u64,
    ) -> Result<Statement, String> {
        let parsed: Bundle =
            serde_json::from_slice(raw).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        if parsed.media_type != BUNDLE_MEDIA_TYPE {
            return Err(format!(
                "bundle media type {:?} is not {BUNDLE_MEDIA_TYPE}",
                parsed.media_type
            ));
        }
        let envelope = parsed.dsse_envelope.as_ref().ok_or(
            "bundle holds a message signature, not the DSSE envelope cosign sign v3 writes",
        )?;
        if envelope.payload.len() as u64 > max_payload_bytes.saturating_mul(4) / 3 + 4 {
            return Err(format!(
                "DSSE payload is larger than {max_payload_bytes} bytes (signatures.limits.maxPayloadBytes)"
            ));
        }
        self.signed_entry_timestamp(raw)?;
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let bytes: [u8; 32] = hex::decode(hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{digest} is not a sha256 digest"))?;
        let bundle: sigstore::bundle::Bundle =
            serde_json::from_slice(raw).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        let policy = AnyIdentity(identities);
        self.verifier
            .verify_digest_with(bytes.into(), bundle, &policy, true)
            .await
            .map_err(|e| format!("keyless bundle rejected: {e}"))?;
        // The Statement sigstore-rs matched the digest in must be a signature.
        let payload = base64::engine::general_purpose::STANDARD
            .decode(&envelope.payload)
            .map_err(|e| format!("DSSE payload is not base64: {e}"))?;
        serde_json::from_slice(&payload)
            .map_err(|e| format!("signed payload is not an in-toto Statement: {e}"))
    }

    /// The Rekor entry, verified with the trusted root's key for its log: its SET (the
    /// integrated time sigstore-rs then trusts), and its inclusion proof if it has one.
    fn signed_entry_timestamp(&self, raw: &[u8]) -> Result<(), String> {
        let entries = tlog::entries(raw)?;
        let [entry] = entries.as_slice() else {
            return Err(format!(
                "{} transparency log entries: a keyless signature needs exactly one Rekor entry",
                entries.len()
            ));
        };
        if entry.verify_inclusion(&self.rekor_keys)?.is_none() {
            // A Rekor v2 entry has no integrated time: the certificate's validity then
            // needs an RFC 3161 timestamp, which this verifier does not read yet.
            return Err("the Rekor entry has no Signed Entry Timestamp (a Rekor v2 entry): keyless bundles need a Rekor v1 entry".into());
        }
        Ok(())
    }
}

/// What a key rule asks of the transparency log (`transparency: optional|required`).
pub struct LogPolicy<'a> {
    pub required: bool,
    pub rekor_keys: &'a std::collections::BTreeMap<String, CosignVerificationKey>,
    /// SubjectPublicKeyInfo DER of each of the rule's keys, in order.
    pub key_ders: &'a [Vec<u8>],
}

/// The log entry of a key-signed DSSE bundle: its inclusion (SET, inclusion proof),
/// and that it logs this payload, this signature and one of the keys that signed.
fn check_key_log_entry(
    raw: &[u8],
    payload: &[u8],
    signatures: &[EnvelopeSignature],
    signed: &[usize],
    log: &LogPolicy<'_>,
) -> Result<(), String> {
    let entries = tlog::entries(raw)?;
    let entry = match entries.as_slice() {
        [] if log.required => {
            return Err("no transparency log entry, and the rule's transparency is required".into())
        }
        [] => return Ok(()),
        [entry] => entry,
        more => {
            return Err(format!(
                "{} transparency log entries: expected one Rekor entry",
                more.len()
            ))
        }
    };
    entry.verify_inclusion(log.rekor_keys)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let signatures: Vec<Vec<u8>> = signatures
        .iter()
        .filter_map(|s| b64.decode(&s.sig).ok())
        .collect();
    entry.logs_dsse(payload, &signatures, |verifier| match verifier {
        tlog::Verifier::Key(der) => signed.iter().any(|&k| log.key_ders[k] == *der),
        tlog::Verifier::Certificate(_) => false,
    })
}

/// The DER inside a PEM block.
pub fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// A certificate matching any accepted identity (issuer extension and subject SAN).
struct AnyIdentity<'a>(&'a [KeylessIdentity]);

impl sigstore::bundle::verify::VerificationPolicy for AnyIdentity<'_> {
    fn verify(
        &self,
        cert: &x509_cert::Certificate,
    ) -> sigstore::bundle::verify::policy::PolicyResult {
        use sigstore::bundle::verify::policy::{OIDCIssuer, PolicyError, SingleX509ExtPolicy as _};
        use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
        let names: Vec<String> = match cert.tbs_certificate().get_extension::<SubjectAltName>() {
            Ok(Some((_, san))) => san
                .0
                .iter()
                .filter_map(|name| match name {
                    GeneralName::Rfc822Name(n) => Some(n.as_str().to_string()),
                    GeneralName::UniformResourceIdentifier(n) => Some(n.as_str().to_string()),
                    _ => None,
                })
                .collect(),
            _ => return Err(PolicyError::ExtensionNotFound),
        };
        let accepted = self.0.iter().any(|id| {
            sigstore::bundle::verify::VerificationPolicy::verify(&OIDCIssuer::new(&id.issuer), cert)
                .is_ok()
                && names.iter().any(|n| match &id.subject {
                    Ok(exact) => n == exact,
                    Err(re) => re.is_match(n),
                })
        });
        if accepted {
            Ok(())
        } else {
            Err(PolicyError::ExtensionCheckFailed {
                extension: "identity (issuer, SubjectAltName)".into(),
                expected: self
                    .0
                    .iter()
                    .map(|id| {
                        format!(
                            "{} from {}",
                            id.subject
                                .as_ref()
                                .map_or_else(|r| r.as_str().to_string(), Clone::clone),
                            id.issuer
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" or "),
                actual: names.join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_encoding() {
        // DSSE protocol.md's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn bundles_that_are_not_key_signed_dsse_are_refused_with_the_reason() {
        let cases = [
            ("{}", "not a Sigstore bundle"),
            (
                r#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1","verificationMaterial":{"publicKey":{}}}"#,
                "media type",
            ),
            (
                r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{"rawBytes":"AA=="}}}"#,
                "keyless",
            ),
            (
                r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"}},"messageSignature":{}}"#,
                "message signature",
            ),
        ];
        for (raw, why) in cases {
            let error = keys_that_signed(raw.as_bytes(), "sha256:00", &[], 1024, None).unwrap_err();
            assert!(error.contains(why), "{raw}: {error}");
        }
    }
}
