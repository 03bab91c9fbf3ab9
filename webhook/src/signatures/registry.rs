//! Bounded access to the registry holding an image's cosign signatures.
//!
//! Before sigstore downloads anything we fetch the signature manifest ourselves, with
//! per-request timeouts, and check its size, layer count and declared layer sizes: a
//! hostile registry cannot make us download megabytes or verify thousands of layers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::ClientConfig;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    OciDescriptor, OciManifest, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::bundle::BUNDLE_MEDIA_TYPE;
use super::config::{
    SignaturesConfig, DEFAULT_MAX_LAYER_BYTES, DEFAULT_MAX_MANIFEST_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_REFERRERS, DEFAULT_MAX_SIGNATURES,
    DEFAULT_REQUEST_TIMEOUT,
};
use super::SignatureError;

/// The OCI empty descriptor's media type, which some registries (GHCR) report as a
/// referrer's `artifactType`.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Media type of a cosign legacy attestation layer (a DSSE envelope).
pub const DSSE_LAYER_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Media type of a cosign SimpleSigning signature layer.
pub const COSIGN_LAYER_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// Transport options of one registry.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    pub insecure: bool,
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_manifest_bytes: u64,
    pub max_layer_bytes: u64,
    pub max_signatures: usize,
    pub max_referrers: usize,
    pub max_payload_bytes: u64,
    pub request_timeout: Duration,
}

/// The Sigstore bundles attached to a digest as OCI referrers.
#[derive(Debug, Default)]
pub struct Bundles {
    /// Each bundle's bytes (size-capped, content digest checked).
    pub found: Vec<Vec<u8>>,
    /// Why a referrer was passed over (another subject, not a bundle).
    pub skipped: Vec<String>,
}

/// The cosign layers of a signature manifest that passed the limits.
#[derive(Debug)]
pub struct SignatureManifest {
    pub layers: Vec<OciDescriptor>,
}

/// Registry clients (one per configured host plus a default) and the limits.
pub struct Registries {
    transports: HashMap<String, Transport>,
    clients: HashMap<String, Client>,
    default_client: Client,
    pub limits: Limits,
}

impl Transport {
    /// The client configuration for this registry (protocol, extra CA) in sigstore's
    /// terms. The oci_client one is derived from it, so the signature fetches and
    /// sigstore's own client always trust the same roots.
    pub fn sigstore_config(&self) -> sigstore::registry::ClientConfig {
        use sigstore::registry::{Certificate, CertificateEncoding, ClientProtocol};
        sigstore::registry::ClientConfig {
            protocol: if self.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: self
                .ca_pem
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            ..sigstore::registry::ClientConfig::default()
        }
    }
}

fn client_config(transport: &Transport, limits: &Limits) -> ClientConfig {
    ClientConfig {
        read_timeout: Some(limits.request_timeout),
        connect_timeout: Some(limits.request_timeout),
        ..transport.sigstore_config().into()
    }
}

impl Registries {
    pub fn new(config: &SignaturesConfig) -> Result<Self, SignatureError> {
        let limits = Limits {
            max_manifest_bytes: config
                .limits
                .max_manifest_bytes
                .unwrap_or(DEFAULT_MAX_MANIFEST_BYTES),
            max_layer_bytes: config
                .limits
                .max_layer_bytes
                .unwrap_or(DEFAULT_MAX_LAYER_BYTES),
            max_signatures: config
                .limits
                .max_signatures
                .unwrap_or(DEFAULT_MAX_SIGNATURES),
            max_referrers: config.limits.max_referrers.unwrap_or(DEFAULT_MAX_REFERRERS),
            max_payload_bytes: config
                .limits
                .max_payload_bytes
                .unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES),
            request_timeout: config
                .limits
                .request_timeout
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        };
        let mut transports = HashMap::new();
        let mut clients = HashMap::new();
        for (i, reg) in config.registries.iter().enumerate() {
            let ca_pem = match &reg.ca_file {
                Some(path) => Some(read_ca(path, i)?),
                None => None,
            };
            let transport = Transport {
                insecure: reg.insecure,
                ca_pem,
            };
            clients.insert(
                reg.host.clone(),
                Client::new(client_config(&transport, &limits)),
            );
            transports.insert(reg.host.clone(), transport);
        }
        let default_client = Client::new(client_config(&Transport::default(), &limits));
        Ok(Self {
            transports,
            clients,
            default_client,
            limits,
        })
    }

    pub fn transport(&self, registry: &str) -> Transport {
        self.transports.get(registry).cloned().unwrap_or_default()
    }

    fn client(&self, registry: &str) -> &Client {
        self.clients.get(registry).unwrap_or(&self.default_client)
    }

    /// Fetches and checks the signature manifest of `digest`.
    ///
    /// `Ok(None)`: the registry answered that no signature exists.
    pub async fn signature_manifest(
        &self,
        image: &Reference,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<Option<SignatureManifest>, SignatureError> {
        self.cosign_manifest(image, digest, auth, "sig", COSIGN_LAYER_MEDIA_TYPE)
            .await
    }

    /// Fetches and checks cosign's legacy attestation manifest of `digest`
    /// (`sha256-<hex>.att`, one DSSE envelope per layer).
    pub async fn attestation_manifest(
        &self,
        image: &Reference,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<Option<SignatureManifest>, SignatureError> {
        self.cosign_manifest(image, digest, auth, "att", DSSE_LAYER_MEDIA_TYPE)
            .await
    }

    /// The `sha256-<hex>.<suffix>` manifest's layers of `layer_type`, within the limits.
    async fn cosign_manifest(
        &self,
        image: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        suffix: &str,
        layer_type: &str,
    ) -> Result<Option<SignatureManifest>, SignatureError> {
        let client = self.client(image.registry());
        let sig_ref = Reference::with_tag(
            image.registry().to_string(),
            image.repository().to_string(),
            format!("{}.{suffix}", digest.replace(':', "-")),
        );
        let accepted = [OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];
        let (body, _) = match client.pull_manifest_raw(&sig_ref, auth, &accepted).await {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify(image.registry(), &e, self.limits.request_timeout)),
        };
        self.check_manifest(image.registry(), &body, layer_type)
            .map(Some)
    }

    /// The Sigstore bundles that name `digest` as their subject: the OCI referrers API,
    /// or the referrers tag schema (`sha256-<hex>`) when the registry has no such API
    /// (oci-client falls back on its 404, as the distribution spec says). Candidates are
    /// told by the manifest's **layer** media type: some registries (GHCR) report the
    /// empty descriptor's type as `artifactType`. At most `maxReferrers` are read.
    pub async fn bundles(
        &self,
        image: &Reference,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<Bundles, SignatureError> {
        let registry = image.registry();
        let timeout = self.limits.request_timeout;
        let limit = |message: String| SignatureError::Limit {
            registry: registry.to_string(),
            message,
        };
        let client = self.client(registry);
        let subject = Reference::with_digest(
            registry.to_string(),
            image.repository().to_string(),
            digest.to_string(),
        );
        // Authenticates the client for this repository (pull_referrers uses stored auth).
        let _ = client
            .auth(&subject, auth, oci_client::RegistryOperation::Pull)
            .await;
        let index = match client.pull_referrers(&subject, None).await {
            Ok(index) => index,
            Err(e) if is_not_found(&e) => return Ok(Bundles::default()),
            Err(e) => return Err(classify(registry, &e, timeout)),
        };
        let candidates: Vec<_> = index
            .manifests
            .iter()
            .filter(|m| {
                m.artifact_type
                    .as_deref()
                    .is_none_or(|t| [BUNDLE_MEDIA_TYPE, EMPTY_MEDIA_TYPE, ""].contains(&t))
            })
            .collect();
        if candidates.len() > self.limits.max_referrers {
            return Err(limit(format!(
                "{} referrers of {digest}, limit is {} (signatures.limits.maxReferrers)",
                candidates.len(),
                self.limits.max_referrers
            )));
        }
        let mut bundles = Bundles::default();
        for entry in candidates {
            if entry.size < 0 || entry.size as u64 > self.limits.max_manifest_bytes {
                return Err(limit(format!(
                    "referrer {} declares {} bytes, limit is {} (signatures.limits.maxManifestBytes)",
                    entry.digest, entry.size, self.limits.max_manifest_bytes
                )));
            }
            let reference = Reference::with_digest(
                registry.to_string(),
                image.repository().to_string(),
                entry.digest.clone(),
            );
            let accepted = [OCI_IMAGE_MEDIA_TYPE];
            let (body, _) = client
                .pull_manifest_raw(&reference, auth, &accepted)
                .await
                .map_err(|e| classify(registry, &e, timeout))?;
            if body.len() as u64 > self.limits.max_manifest_bytes {
                return Err(limit(format!(
                    "referrer {} is {} bytes, limit is {} (signatures.limits.maxManifestBytes)",
                    entry.digest,
                    body.len(),
                    self.limits.max_manifest_bytes
                )));
            }
            let Ok(OciManifest::Image(manifest)) = serde_json::from_slice::<OciManifest>(&body)
            else {
                bundles
                    .skipped
                    .push(format!("{}: not an image manifest", entry.digest));
                continue;
            };
            // A tag schema index is written by anyone who can push: trust the manifest's
            // own subject, not the index it was listed in.
            if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(digest) {
                bundles
                    .skipped
                    .push(format!("{}: its subject is another digest", entry.digest));
                continue;
            }
            let Some(layer) = manifest
                .layers
                .iter()
                .find(|l| l.media_type == BUNDLE_MEDIA_TYPE)
            else {
                continue;
            };
            if layer.size < 0 || layer.size as u64 > self.limits.max_layer_bytes {
                return Err(limit(format!(
                    "bundle {} declares {} bytes, limit is {} (signatures.limits.maxLayerBytes)",
                    layer.digest, layer.size, self.limits.max_layer_bytes
                )));
            }
            bundles.found.push(self.fetch_layer(image, layer).await?);
        }
        Ok(bundles)
    }

    /// Downloads one signature layer, never more than `maxLayerBytes`, and checks that
    /// its content matches the digest the manifest names.
    pub async fn fetch_layer(
        &self,
        image: &Reference,
        layer: &OciDescriptor,
    ) -> Result<Vec<u8>, SignatureError> {
        let registry = image.registry();
        let limit = |message: String| SignatureError::Limit {
            registry: registry.to_string(),
            message,
        };
        let timeout = self.limits.request_timeout;
        let mut stream = self
            .client(registry)
            .pull_blob_stream(image, layer)
            .await
            .map_err(|e| classify(registry, &e, timeout))?;
        let max = self.limits.max_layer_bytes;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SignatureError::Registry {
                registry: registry.to_string(),
                kind: "transport",
                message: format!("reading signature layer {}: {e}", layer.digest),
            })?;
            if (data.len() + chunk.len()) as u64 > max {
                return Err(limit(format!(
                    "signature layer {} is larger than {max} bytes (signatures.limits.maxLayerBytes)",
                    layer.digest
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != layer.digest {
            return Err(limit(format!(
                "signature layer {} has content with digest {actual}",
                layer.digest
            )));
        }
        Ok(data)
    }

    /// Applies the limits to a signature manifest.
    fn check_manifest(
        &self,
        registry: &str,
        body: &[u8],
        layer_type: &str,
    ) -> Result<SignatureManifest, SignatureError> {
        let limit = |message: String| SignatureError::Limit {
            registry: registry.to_string(),
            message,
        };
        if body.len() as u64 > self.limits.max_manifest_bytes {
            return Err(limit(format!(
                "signature manifest is {} bytes, limit is {} (signatures.limits.maxManifestBytes)",
                body.len(),
                self.limits.max_manifest_bytes
            )));
        }
        let manifest: OciManifest = serde_json::from_slice(body)
            .map_err(|e| limit(format!("signature manifest is not an image manifest: {e}")))?;
        let OciManifest::Image(image) = manifest else {
            return Err(limit("signature tag points at an image index".to_string()));
        };
        let signatures: Vec<OciDescriptor> = image
            .layers
            .iter()
            .filter(|l| l.media_type == layer_type)
            .cloned()
            .collect();
        if image.layers.len() > self.limits.max_signatures {
            return Err(limit(format!(
                "{} signature layers, limit is {} (signatures.limits.maxSignatures)",
                image.layers.len(),
                self.limits.max_signatures
            )));
        }
        if let Some(big) = image
            .layers
            .iter()
            .find(|l| l.size < 0 || l.size as u64 > self.limits.max_layer_bytes)
        {
            return Err(limit(format!(
                "signature layer {} declares {} bytes, limit is {} (signatures.limits.maxLayerBytes)",
                big.digest, big.size, self.limits.max_layer_bytes
            )));
        }
        Ok(SignatureManifest { layers: signatures })
    }
}

fn read_ca(path: &PathBuf, index: usize) -> Result<Vec<u8>, SignatureError> {
    let pem = std::fs::read(path).map_err(|e| SignatureError::Config {
        field: format!("signatures.registries[{index}].caFile"),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(SignatureError::Config {
            field: format!("signatures.registries[{index}].caFile"),
            message: format!("{} holds no PEM certificate", path.display()),
        });
    }
    Ok(pem)
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// Maps a client error to a registry error with a low-cardinality kind.
pub fn classify(registry: &str, e: &OciDistributionError, timeout: Duration) -> SignatureError {
    let (kind, message) = match e {
        OciDistributionError::RequestError(re) if re.is_timeout() => (
            "timeout",
            format!("timed out after {}", humantime::format_duration(timeout)),
        ),
        OciDistributionError::RequestError(re) if re.is_connect() => {
            ("connect", format!("connection failed: {}", error_chain(re)))
        }
        OciDistributionError::RequestError(re) => ("transport", error_chain(re)),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => (
            "auth",
            format!("{e} (check the --registry-auth docker config for this registry)"),
        ),
        OciDistributionError::ServerError { code, .. } if *code >= 500 => ("server", e.to_string()),
        _ => ("protocol", e.to_string()),
    };
    SignatureError::Registry {
        registry: registry.to_string(),
        kind,
        message,
    }
}

/// `reqwest` hides the useful part (connection refused, bad certificate) in sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
