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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    predicate_type: String,
}

#[derive(Debug, Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
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

/// Which of `keys` signed this bundle for `digest` (indices), or why none could.
pub fn keys_that_signed(
    raw: &[u8],
    digest: &str,
    keys: &[CosignVerificationKey],
    max_payload_bytes: u64,
) -> Result<Vec<usize>, String> {
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
        return Err("bundle not signed by a trusted key".into());
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| format!("signed payload is not an in-toto Statement: {e}"))?;
    if !STATEMENT_TYPES.contains(&statement.type_.as_str()) {
        return Err(format!("signed payload has _type {:?}", statement.type_));
    }
    if statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(format!(
            "predicate type {:?} is an attestation, not a cosign signature ({COSIGN_SIGN_PREDICATE})",
            statement.predicate_type
        ));
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
    Ok(signed)
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
            let error = keys_that_signed(raw.as_bytes(), "sha256:00", &[], 1024).unwrap_err();
            assert!(error.contains(why), "{raw}: {error}");
        }
    }
}
