//! Cosign signatures in cosign's on-registry format: an OCI manifest tagged
//! `sha256-<hex>.sig` whose layers are SimpleSigning JSON payloads, each carrying its
//! base64 signature (and, keyless, certificate, chain and Rekor bundle) as annotations.

use std::collections::BTreeMap;

use base64::Engine as _;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::{SigStoreSigner, SigningScheme};

use super::TestRegistry;

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const CERT_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An ECDSA P-256 signing key, as `cosign generate-key-pair` makes.
pub struct KeySigner {
    signer: SigStoreSigner,
    pub public_pem: String,
}

impl KeySigner {
    pub fn new() -> Self {
        Self::with_scheme(SigningScheme::ECDSA_P256_SHA256_ASN1)
    }

    /// A key of another type (P-384, Ed25519, RSA), as `cosign` can use.
    pub fn with_scheme(scheme: SigningScheme) -> Self {
        let signer = scheme.create_signer().expect("create signer");
        let public_pem = signer
            .to_sigstore_keypair()
            .and_then(|k| k.public_key_to_pem())
            .expect("public key PEM");
        Self { signer, public_pem }
    }

    /// From a PKCS#8 PEM private key (used for the keyless leaf certificate's key).
    pub fn from_pkcs8_pem(pem: &str) -> Self {
        let pair = sigstore::crypto::signing_key::SigStoreKeyPair::from_pem(pem.as_bytes())
            .expect("PKCS#8 ECDSA key");
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .expect("signer");
        let public_pem = pair.public_key_to_pem().expect("public PEM");
        Self { signer, public_pem }
    }

    pub fn public_der(&self) -> Vec<u8> {
        self.signer
            .to_sigstore_keypair()
            .and_then(|k| k.public_key_to_der())
            .expect("public key DER")
    }

    pub fn private_pem(&self) -> String {
        self.signer
            .to_sigstore_keypair()
            .and_then(|k| k.private_key_to_pem())
            .map(|p| p.to_string())
            .expect("private key PEM")
    }

    /// Base64 ASN.1 signature of `data`, as cosign stores it.
    pub fn sign(&self, data: &[u8]) -> String {
        b64(&self.signer.sign(data).expect("sign"))
    }
}

impl Default for KeySigner {
    fn default() -> Self {
        Self::new()
    }
}

/// cosign's SimpleSigning payload for `docker_reference` at `digest`.
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .expect("serialise payload")
}

/// One signature layer: payload plus annotations.
#[derive(Clone)]
pub struct SigLayer {
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl SigLayer {
    /// A layer signed with `key` over `payload`.
    pub fn signed(payload: Vec<u8>, key: &KeySigner) -> Self {
        let signature = key.sign(&payload);
        Self {
            payload,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)]),
        }
    }
}

/// Pushes `layers` as the cosign signature manifest of `digest` in `repo`.
pub async fn push_signatures(
    registry: &TestRegistry,
    repo: &str,
    digest: &str,
    layers: &[SigLayer],
) {
    push_cosign_manifest(
        registry,
        repo,
        digest,
        "sig",
        SIMPLE_SIGNING_MEDIA_TYPE,
        layers,
    )
    .await
}

/// Pushes key-signed in-toto attestations of `digest` as cosign's legacy `.att`
/// manifest: one DSSE envelope layer per `(predicateType, predicate)`, as `cosign
/// attest --key` wrote them before v3 (the layers carry the predicate type annotation).
/// Made here, not by cosign (not available on these machines): no independent oracle.
pub async fn push_legacy_attestations(
    registry: &TestRegistry,
    repo: &str,
    digest: &str,
    key: &KeySigner,
    attestations: &[(&str, serde_json::Value)],
) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let layers: Vec<SigLayer> = attestations
        .iter()
        .map(|(predicate_type, predicate)| {
            let statement = serde_json::json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": predicate_type,
                "subject": [{"name": format!("{}/{repo}", registry.host), "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
                "predicate": predicate,
            });
            let payload = serde_json::to_vec(&statement).expect("statement");
            let payload_type = "application/vnd.in-toto+json";
            let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
            pae.extend_from_slice(&payload);
            let envelope = serde_json::json!({
                "payloadType": payload_type,
                "payload": b64.encode(&payload),
                "signatures": [{"keyid": "", "sig": key.sign(&pae)}],
            });
            SigLayer {
                payload: serde_json::to_vec(&envelope).expect("envelope"),
                annotations: BTreeMap::from([
                    ("predicateType".to_string(), predicate_type.to_string()),
                    (SIGNATURE_ANNOTATION.to_string(), String::new()),
                ]),
            }
        })
        .collect();
    push_cosign_manifest(
        registry,
        repo,
        digest,
        "att",
        "application/vnd.dsse.envelope.v1+json",
        &layers,
    )
    .await
}

async fn push_cosign_manifest(
    registry: &TestRegistry,
    repo: &str,
    digest: &str,
    suffix: &str,
    media_type: &str,
    layers: &[SigLayer],
) {
    let image_layers: Vec<ImageLayer> = layers
        .iter()
        .map(|l| {
            ImageLayer::new(
                l.payload.clone(),
                media_type.to_string(),
                Some(l.annotations.clone()),
            )
        })
        .collect();
    let config = Config::oci_v1(b"{}".to_vec(), None);
    let mut manifest = OciImageManifest::build(&image_layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let tag = format!("{}.{suffix}", digest.replace(':', "-"));
    let reference = Reference::with_tag(registry.host.clone(), repo.to_string(), tag);
    let client = registry.client();
    client
        .store_auth_if_needed(reference.resolve_registry(), &registry.auth())
        .await;
    client
        .auth(&reference, &registry.auth(), RegistryOperation::Push)
        .await
        .expect("registry auth");
    let blobs = std::iter::once(&config.data).chain(image_layers.iter().map(|l| &l.data));
    for data in blobs {
        let blob_digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        client
            .push_blob(&reference, data.clone(), &blob_digest)
            .await
            .expect("push signature blob");
    }
    // Plain serde_json, as cosign does: oci-client's `push` writes canonical JSON with raw
    // newlines inside strings, which registries reject for PEM certificate annotations.
    let body = serde_json::to_vec(&manifest).expect("serialise manifest");
    client
        .push_manifest_raw(
            &reference,
            body,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .expect("push signature manifest");
}

/// Signs `digest` of `repo` with each key, one layer per key, as repeated `cosign sign`.
pub async fn sign_with_keys(
    registry: &TestRegistry,
    repo: &str,
    digest: &str,
    keys: &[&KeySigner],
) {
    let reference = format!("{}/{repo}", registry.host);
    let layers: Vec<SigLayer> = keys
        .iter()
        .map(|k| SigLayer::signed(payload(&reference, digest), k))
        .collect();
    push_signatures(registry, repo, digest, &layers).await;
}
