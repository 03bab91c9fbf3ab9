//! A private Sigstore made in the test: a Fulcio-style CA chain (root → intermediate →
//! short-lived leaf with the signer's identity), a Rekor log key that signs bundle SETs,
//! a CT log key, and the `trusted_root.json` describing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest as _, Sha256};

use super::cosign::{
    b64, KeySigner, SigLayer, BUNDLE_ANNOTATION, CERT_ANNOTATION, CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
};

/// Fulcio's OIDC issuer extension (v1, raw UTF-8), which sigstore-rs reads.
const ISSUER_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];

/// Who signs: an e-mail (people) or a URI (CI workflows) plus the OIDC issuer.
pub struct Identity<'a> {
    pub subject: &'a str,
    pub issuer: &'a str,
}

pub struct TestSigstore {
    intermediate: Issuer<'static, KeyPair>,
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    chain_pem: String,
    pub rekor: KeySigner,
    pub ct: KeySigner,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn log_id(public_der: &[u8]) -> Vec<u8> {
    Sha256::digest(public_der).to_vec()
}

impl TestSigstore {
    pub fn new() -> Self {
        let root_key = KeyPair::generate().expect("root key");
        let root_params = ca_params("test fulcio root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().expect("intermediate key");
        let int_params = ca_params("test fulcio intermediate");
        let intermediate = int_params
            .signed_by(&int_key, &root_issuer)
            .expect("intermediate");
        Self {
            chain_pem: format!("{}{}", intermediate.pem(), root.pem()),
            root_der: root.der().to_vec(),
            intermediate_der: intermediate.der().to_vec(),
            intermediate: Issuer::new(int_params, int_key),
            rekor: KeySigner::new(),
            ct: KeySigner::new(),
        }
    }

    /// `trusted_root.json` in the Sigstore protobuf-specs JSON form.
    pub fn trusted_root_json(&self) -> String {
        let log = |key: &KeySigner, url: &str| {
            let der = key.public_der();
            serde_json::json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"}
                },
                "logId": {"keyId": b64(&log_id(&der))}
            })
        };
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, "https://rekor.test")],
            "certificateAuthorities": [{
                "subject": {"organization": "guardrail-test", "commonName": "fulcio"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [
                    {"rawBytes": b64(&self.intermediate_der)},
                    {"rawBytes": b64(&self.root_der)}
                ]},
                "validFor": {"start": "2020-01-01T00:00:00Z"}
            }],
            "ctlogs": [log(&self.ct, "https://ctfe.test")]
        })
        .to_string()
    }

    pub fn write_trusted_root(&self, dir: &Path) -> PathBuf {
        super::write(dir, "trusted_root.json", &self.trusted_root_json())
    }

    /// A Fulcio-style leaf for `identity` and its key.
    fn leaf(&self, identity: &Identity<'_>) -> (String, KeySigner) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        let san = identity
            .subject
            .to_string()
            .try_into()
            .expect("IA5 subject");
        params.subject_alt_names = vec![if identity.subject.contains("://") {
            SanType::URI(san)
        } else {
            SanType::Rfc822Name(san)
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            ISSUER_OID,
            identity.issuer.as_bytes().to_vec(),
        )];
        let cert = params.signed_by(&key, &self.intermediate).expect("leaf");
        (cert.pem(), KeySigner::from_pkcs8_pem(&key.serialize_pem()))
    }

    /// A keyless signature layer; `with_bundle: false` leaves out the Rekor bundle.
    pub fn sign(&self, payload: Vec<u8>, identity: &Identity<'_>, with_bundle: bool) -> SigLayer {
        let (cert_pem, key) = self.leaf(identity);
        let signature = key.sign(&payload);
        let mut annotations = BTreeMap::from([
            (SIGNATURE_ANNOTATION.to_string(), signature.clone()),
            (CERT_ANNOTATION.to_string(), cert_pem.clone()),
            (CHAIN_ANNOTATION.to_string(), self.chain_pem.clone()),
        ]);
        if with_bundle {
            annotations.insert(
                BUNDLE_ANNOTATION.to_string(),
                self.bundle(&payload, &signature, &cert_pem),
            );
        }
        SigLayer {
            payload,
            annotations,
        }
    }

    /// A Rekor bundle: the hashedrekord entry for this signature and its SET, signed by
    /// the log key over the canonical JSON of the payload (sorted keys, no spaces).
    pub fn bundle(&self, payload: &[u8], signature: &str, cert_pem: &str) -> String {
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
                "signature": {"content": signature, "publicKey": {"content": b64(cert_pem.as_bytes())}}
            }
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let entry: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
            ("body", b64(body.to_string().as_bytes()).into()),
            ("integratedTime", now.into()),
            (
                "logID",
                hex::encode(log_id(&self.rekor.public_der())).into(),
            ),
            ("logIndex", 42.into()),
        ]);
        let canonical = serde_json::to_vec(&entry).expect("canonical JSON");
        let set = self.rekor.sign(&canonical);
        serde_json::json!({"SignedEntryTimestamp": set, "Payload": entry}).to_string()
    }
}

impl Default for TestSigstore {
    fn default() -> Self {
        Self::new()
    }
}
