//! Transparency log entries as Sigstore bundles carry them (`verificationMaterial.
//! tlogEntries`): Rekor v1 entries, with a Signed Entry Timestamp and usually an
//! inclusion proof, and Rekor v2 entries, with an inclusion proof only (no SET, no
//! integrated time).
//!
//! An entry counts when every proof it carries verifies and it carries at least one:
//! the SET with the log's key from the trusted root (canonical JSON of body,
//! integratedTime, logID, logIndex, as Rekor signs it), and the inclusion proof
//! (RFC 6962 audit path to the root of a checkpoint signed by that key, through
//! sigstore-rs's `InclusionProof::verify`). This is what sigstore-js's verifier does
//! (`tlog/index.ts`). Then its body must log this payload, this signature and this
//! signer: Rekor's `dsse` 0.0.1 body (`pkg/types/dsse/v0.0.1`) or rekor-tiles' `dsse`
//! 0.0.2 (`DSSELogEntryV002`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;
use sigstore::crypto::{CosignVerificationKey, Signature};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    verification_material: Tlog,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tlog {
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

/// The bundle's log entries.
pub fn entries(raw: &[u8]) -> Result<Vec<TlogEntry>, String> {
    let material: Material =
        serde_json::from_slice(raw).map_err(|e| format!("bundle verification material: {e}"))?;
    Ok(material.verification_material.tlog_entries)
}

/// One log entry as a bundle carries it (protobuf JSON: int64 as strings, bytes as
/// base64).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlogEntry {
    log_index: String,
    log_id: LogId,
    kind_version: Option<KindVersion>,
    #[serde(default)]
    integrated_time: Option<String>,
    canonicalized_body: String,
    inclusion_promise: Option<Promise>,
    inclusion_proof: Option<Proof>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Proof {
    log_index: String,
    root_hash: String,
    tree_size: String,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Option<Checkpoint>,
}

#[derive(Deserialize)]
struct Checkpoint {
    envelope: String,
}

impl TlogEntry {
    /// Every proof of inclusion the entry carries, with the trusted root's key for its
    /// log (keyed by hex log id); at least one is needed. Returns the integrated time
    /// when a verified SET authenticates it (Rekor v1; Rekor v2 entries have none).
    pub fn verify_inclusion(
        &self,
        keys: &BTreeMap<String, CosignVerificationKey>,
    ) -> Result<Option<i64>, String> {
        let log_id = hex::encode(
            B64.decode(&self.log_id.key_id)
                .map_err(|e| format!("Rekor log id is not base64: {e}"))?,
        );
        let key = keys
            .get(&log_id)
            .ok_or_else(|| format!("Rekor log {log_id} is not in the trusted root"))?;
        let integrated_time = match &self.inclusion_promise {
            Some(promise) => Some(self.verify_set(promise, &log_id, key)?),
            None => None,
        };
        match &self.inclusion_proof {
            Some(proof) => self.verify_proof(proof, key)?,
            None if integrated_time.is_none() => {
                return Err(
                    "the Rekor entry has neither a Signed Entry Timestamp nor an inclusion proof"
                        .into(),
                )
            }
            None => {}
        }
        Ok(integrated_time)
    }

    /// The SET: the log's signature over the canonical JSON of body, integratedTime,
    /// logID, logIndex. Returns the integrated time it authenticates.
    fn verify_set(
        &self,
        promise: &Promise,
        log_id: &str,
        key: &CosignVerificationKey,
    ) -> Result<i64, String> {
        let integrated_time = parse_int(
            self.integrated_time.as_deref().unwrap_or_default(),
            "integratedTime",
        )?;
        let signed = serde_json::json!({
            "body": self.canonicalized_body,
            "integratedTime": integrated_time,
            "logID": log_id,
            "logIndex": parse_int(&self.log_index, "logIndex")?,
        });
        let canonical = serde_json_canonicalizer::to_vec(&signed).map_err(|e| e.to_string())?;
        let set = B64
            .decode(&promise.signed_entry_timestamp)
            .map_err(|e| format!("SET is not base64: {e}"))?;
        key.verify_signature(Signature::Raw(&set), &canonical)
            .map_err(|_| {
                "the Rekor entry's Signed Entry Timestamp does not verify with the trusted log key"
                    .to_string()
            })?;
        Ok(integrated_time)
    }

    /// The audit path from this body's leaf to the root of the checkpoint, and the
    /// checkpoint's signature by the log.
    fn verify_proof(&self, proof: &Proof, key: &CosignVerificationKey) -> Result<(), String> {
        let hash = |s: &str, what: &str| -> Result<[u8; 32], String> {
            B64.decode(s)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("inclusion proof {what} is not a base64 SHA-256 hash"))
        };
        let envelope = &proof
            .checkpoint
            .as_ref()
            .ok_or("the inclusion proof has no checkpoint")?
            .envelope;
        let checkpoint: sigstore::rekor::models::checkpoint::SignedCheckpoint =
            serde_json::from_value(serde_json::Value::String(envelope.clone()))
                .map_err(|e| format!("inclusion proof checkpoint: {e}"))?;
        let log_index = parse_int(&proof.log_index, "inclusionProof.logIndex")?;
        let tree_size = parse_int(&proof.tree_size, "inclusionProof.treeSize")?;
        let hashes = proof
            .hashes
            .iter()
            .map(|h| hash(h, "hash"))
            .collect::<Result<Vec<_>, _>>()?;
        let tree_size = u64::try_from(tree_size).map_err(|_| "negative inclusionProof.treeSize")?;
        let body = B64
            .decode(&self.canonicalized_body)
            .map_err(|e| format!("the Rekor entry's body is not base64: {e}"))?;
        sigstore::rekor::models::InclusionProof::new(
            log_index,
            hash(&proof.root_hash, "rootHash")?,
            tree_size,
            hashes,
            Some(checkpoint),
        )
        .verify(&body, key)
        .map_err(|e| format!("the Rekor entry's inclusion proof does not verify: {e}"))
    }

    /// That the entry logs this DSSE `payload`, one of the envelope's `signatures` and
    /// a signer `signer` accepts (given the verifier's DER: a public key or a
    /// certificate).
    pub fn logs_dsse(
        &self,
        payload: &[u8],
        signatures: &[Vec<u8>],
        signer: impl Fn(&Verifier) -> bool,
    ) -> Result<(), String> {
        let raw = B64
            .decode(&self.canonicalized_body)
            .map_err(|e| format!("the Rekor entry's body is not base64: {e}"))?;
        let body: Body = serde_json::from_slice(&raw)
            .map_err(|e| format!("the Rekor entry's body is not a Rekor entry: {e}"))?;
        if let Some(kv) = &self.kind_version {
            if kv.kind != body.kind || kv.version != body.api_version {
                return Err(format!(
                    "the Rekor entry says {}/{} but its body is {}/{}",
                    kv.kind, kv.version, body.kind, body.api_version
                ));
            }
        }
        let payload_hash = sha2::Sha256::digest(payload);
        let logged = match (body.kind.as_str(), body.api_version.as_str()) {
            ("dsse", "0.0.1") => {
                let spec: DsseV001 = serde_json::from_value(body.spec)
                    .map_err(|e| format!("the Rekor dsse 0.0.1 body: {e}"))?;
                let [sig] = spec.signatures.as_slice() else {
                    return Err("the Rekor entry logs more than one signature".into());
                };
                let verifier = B64
                    .decode(&sig.verifier)
                    .ok()
                    .and_then(|pem| pem_block(&pem))
                    .ok_or("the Rekor entry's verifier is not a base64 PEM block")?;
                spec.payload_hash.algorithm == "sha256"
                    && hex::decode(&spec.payload_hash.value).ok().as_deref()
                        == Some(&payload_hash[..])
                    && B64
                        .decode(&sig.signature)
                        .is_ok_and(|s| signatures.contains(&s))
                    && signer(&verifier)
            }
            ("dsse", "0.0.2") => {
                let spec: SpecV002 = serde_json::from_value(body.spec)
                    .map_err(|e| format!("the Rekor dsse 0.0.2 body: {e}"))?;
                let spec = spec.dsse_v002;
                let [sig] = spec.signatures.as_slice() else {
                    return Err("the Rekor entry logs more than one signature".into());
                };
                let verifier = match (&sig.verifier.public_key, &sig.verifier.x509_certificate) {
                    (Some(k), None) => B64.decode(&k.raw_bytes).ok().map(Verifier::Key),
                    (None, Some(c)) => B64.decode(&c.raw_bytes).ok().map(Verifier::Certificate),
                    _ => None,
                }
                .ok_or("the Rekor entry's verifier is neither a public key nor a certificate")?;
                spec.payload_hash.algorithm == "SHA2_256"
                    && B64.decode(&spec.payload_hash.digest).ok().as_deref()
                        == Some(&payload_hash[..])
                    && B64
                        .decode(&sig.content)
                        .is_ok_and(|s| signatures.contains(&s))
                    && signer(&verifier)
            }
            (kind, version) => {
                return Err(format!(
                    "the Rekor entry is a {kind} {version} entry, not dsse 0.0.1 or 0.0.2"
                ))
            }
        };
        if logged {
            Ok(())
        } else {
            Err("the Rekor entry is not for this payload, signature and key".into())
        }
    }
}

fn parse_int(s: &str, what: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|e| format!("Rekor {what} {s:?}: {e}"))
}

/// Who a log entry says signed: the DER of a public key (SubjectPublicKeyInfo) or of a
/// certificate.
#[derive(Debug)]
pub enum Verifier {
    Key(Vec<u8>),
    Certificate(Vec<u8>),
}

/// A PEM block's DER, typed by its label.
fn pem_block(pem: &[u8]) -> Option<Verifier> {
    let der = super::bundle::pem_der(pem)?;
    if std::str::from_utf8(pem).ok()?.contains("BEGIN CERTIFICATE") {
        Some(Verifier::Certificate(der))
    } else {
        Some(Verifier::Key(der))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    kind: String,
    api_version: String,
    spec: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseV001 {
    payload_hash: HexHash,
    signatures: Vec<SignatureV001>,
}

#[derive(Deserialize)]
struct HexHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct SignatureV001 {
    signature: String,
    verifier: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecV002 {
    dsse_v002: DsseV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseV002 {
    payload_hash: HashOutput,
    signatures: Vec<SignatureV002>,
}

#[derive(Deserialize)]
struct HashOutput {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
struct SignatureV002 {
    content: String,
    verifier: VerifierV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifierV002 {
    public_key: Option<RawBytes>,
    x509_certificate: Option<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &str, body: &serde_json::Value) -> TlogEntry {
        let body = B64.encode(serde_json::to_vec(body).unwrap());
        let raw = format!(
            r#"{{"logIndex":"1","logId":{{"keyId":"AAAA"}},"canonicalizedBody":"{body}"{fields}}}"#
        );
        serde_json::from_str(&raw).unwrap()
    }

    fn keys() -> BTreeMap<String, CosignVerificationKey> {
        let key = sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap()
            .to_verification_key()
            .unwrap();
        BTreeMap::from([("000000".to_string(), key)])
    }

    #[test]
    fn an_entry_without_any_proof_of_inclusion_does_not_count() {
        let e = entry("", &serde_json::json!({}));
        let error = e.verify_inclusion(&keys()).unwrap_err();
        assert!(
            error.contains("neither a Signed Entry Timestamp nor an inclusion proof"),
            "{error}"
        );
        let e = entry(
            r#","inclusionProof":{"logIndex":"0","rootHash":"AA==","treeSize":"1"}"#,
            &serde_json::json!({}),
        );
        let error = e.verify_inclusion(&keys()).unwrap_err();
        assert!(error.contains("no checkpoint"), "{error}");
    }

    #[test]
    fn bodies_of_another_kind_or_disagreeing_with_their_entry_are_refused() {
        let v2 = serde_json::json!({"kind": "dsse", "apiVersion": "0.0.2", "spec": {}});
        let e = entry(r#","kindVersion":{"kind":"dsse","version":"0.0.1"}"#, &v2);
        let error = e.logs_dsse(b"p", &[], |_| true).unwrap_err();
        assert!(
            error.contains("says dsse/0.0.1 but its body is dsse/0.0.2"),
            "{error}"
        );
        let other = serde_json::json!({"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {}});
        let error = entry("", &other)
            .logs_dsse(b"p", &[], |_| true)
            .unwrap_err();
        assert!(error.contains("not dsse 0.0.1 or 0.0.2"), "{error}");
    }

    #[test]
    fn a_v2_body_logs_its_payload_signature_and_key() {
        let payload = b"statement";
        let body = |digest: &[u8], sig: &[u8]| {
            serde_json::json!({"kind": "dsse", "apiVersion": "0.0.2", "spec": {"dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": B64.encode(digest)},
                "signatures": [{"content": B64.encode(sig),
                    "verifier": {"publicKey": {"rawBytes": B64.encode(b"key-der")},
                                 "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}]}}})
        };
        let hash = sha2::Sha256::digest(payload);
        let is_key = |v: &Verifier| matches!(v, Verifier::Key(d) if d == b"key-der");
        let signatures = [b"sig".to_vec()];
        entry("", &body(&hash, b"sig"))
            .logs_dsse(payload, &signatures, is_key)
            .unwrap();
        for (digest, sig) in [(&b"other"[..], &b"sig"[..]), (&hash[..], &b"other"[..])] {
            let e = entry("", &body(digest, sig));
            assert!(e.logs_dsse(payload, &signatures, is_key).is_err());
        }
        let e = entry("", &body(&hash, b"sig"));
        assert!(e.logs_dsse(payload, &signatures, |_| false).is_err());
    }
}
