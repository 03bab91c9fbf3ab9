//! Reads a Sigstore `trusted_root.json` (Fulcio CAs, Rekor and CT log keys) into
//! sigstore's [`ManualTrustRoot`], so keyless verification needs no network at all
//! (sigstore's own loader fetches TUF metadata, which an air-gapped cluster cannot).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use sigstore::trust::ManualTrustRoot;

use super::SignatureError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedRoot {
    #[serde(default)]
    tlogs: Vec<LogInstance>,
    #[serde(default)]
    certificate_authorities: Vec<CertificateAuthority>,
    #[serde(default)]
    ctlogs: Vec<LogInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogInstance {
    public_key: PublicKey,
    log_id: LogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKey {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateAuthority {
    cert_chain: CertChain,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

fn b64(value: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("{what} is not base64: {e}"))
}

/// Log keys by the id cosign bundles carry: hex of the log id bytes.
fn log_keys(logs: &[LogInstance], what: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut keys = BTreeMap::new();
    for (i, log) in logs.iter().enumerate() {
        let id = b64(&log.log_id.key_id, &format!("{what}[{i}].logId.keyId"))?;
        let der = b64(
            &log.public_key.raw_bytes,
            &format!("{what}[{i}].publicKey.rawBytes"),
        )?;
        keys.insert(hex::encode(id), der);
    }
    Ok(keys)
}

/// Parses a trusted root; all CA certificates (roots and intermediates) become anchors.
pub fn parse(data: &[u8]) -> Result<ManualTrustRoot<'static>, String> {
    parse_for(data, true)
}

/// `need_cas`: keyless verification needs Fulcio CAs; a key rule's log check only the
/// Rekor keys.
fn parse_for(data: &[u8], need_cas: bool) -> Result<ManualTrustRoot<'static>, String> {
    let root: TrustedRoot =
        serde_json::from_slice(data).map_err(|e| format!("not a Sigstore trusted root: {e}"))?;
    let mut fulcio_certs = Vec::new();
    for (i, ca) in root.certificate_authorities.iter().enumerate() {
        for (j, cert) in ca.cert_chain.certificates.iter().enumerate() {
            let der = b64(
                &cert.raw_bytes,
                &format!("certificateAuthorities[{i}].certChain.certificates[{j}].rawBytes"),
            )?;
            fulcio_certs.push(CertificateDer::from(der));
        }
    }
    if need_cas && fulcio_certs.is_empty() {
        return Err("no certificateAuthorities: keyless certificates cannot be trusted".into());
    }
    let rekor_keys = log_keys(&root.tlogs, "tlogs")?;
    if rekor_keys.is_empty() {
        return Err("no tlogs: Rekor bundles (SET) cannot be verified offline".into());
    }
    Ok(ManualTrustRoot {
        fulcio_certs,
        rekor_keys,
        ctfe_keys: log_keys(&root.ctlogs, "ctlogs")?,
    })
}

pub fn load(path: &Path, field: &str) -> Result<ManualTrustRoot<'static>, SignatureError> {
    load_for(path, field, true)
}

/// A trusted root for its Rekor keys only (a key rule's `transparency`).
pub fn load_log_keys(path: &Path, field: &str) -> Result<ManualTrustRoot<'static>, SignatureError> {
    load_for(path, field, false)
}

fn load_for(
    path: &Path,
    field: &str,
    need_cas: bool,
) -> Result<ManualTrustRoot<'static>, SignatureError> {
    let bad = |message: String| SignatureError::Config {
        field: field.to_string(),
        message: format!("{}: {message}", path.display()),
    };
    let data = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    parse_for(&data, need_cas).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_roots_that_cannot_verify_anything() {
        let err = parse(br#"{"tlogs":[],"certificateAuthorities":[]}"#).err();
        assert!(err.is_some_and(|e| e.contains("certificateAuthorities")));
        let err = parse(b"nope").err();
        assert!(err.is_some_and(|e| e.contains("trusted root")));
        let bad_b64 =
            br#"{"certificateAuthorities":[{"certChain":{"certificates":[{"rawBytes":"!"}]}}]}"#;
        let err = parse(bad_b64).err();
        assert!(
            err.is_some_and(|e| e.contains("certificates[0].rawBytes")),
            "bad base64"
        );
    }
}
