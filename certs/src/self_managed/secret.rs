//! The Secret that is the source of truth: its keys, reading it into validated
//! material, and building the object to write.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, ByteString,
};
use rustls::{client::danger::ServerCertVerifier, pki_types::ServerName, RootCertStore};

use super::{bundle, SelfManagedSettings};
use crate::{
    generate::Authority,
    inspect::{self, CertInfo},
    load::{self, ServingMaterial},
    CertError,
};

pub(super) const CA_CRT: &str = "ca.crt";
pub(super) const CA_KEY: &str = "ca.key";
pub(super) const TLS_CRT: &str = "tls.crt";
pub(super) const TLS_KEY: &str = "tls.key";
/// Every CA the API server must trust (new first, then the previous one until it
/// expires). This is what goes into `caBundle`.
pub(super) const BUNDLE: &str = "ca-bundle.crt";

/// The material read from (or written to) the Secret.
pub(crate) struct Stored {
    /// None when the stored pair is unusable (expired, say): it is then reissued from
    /// the stored CA rather than replacing the CA.
    pub serving: Option<ServingMaterial>,
    /// PEM of every trusted CA, for caBundle.
    pub bundle_pem: String,
    pub ca: Authority,
    pub ca_info: CertInfo,
    pub bundle: Vec<(String, CertInfo)>,
    pub tls_crt: String,
    pub tls_key: String,
}

/// Reads and validates every key; `origin` names the Secret in errors.
pub(super) fn parse(secret: &Secret, origin: String) -> Result<Stored, CertError> {
    let field = |key: &str| -> Result<String, CertError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| CertError::Stored {
                object: origin.clone(),
                message: format!("no data key {key:?}"),
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| CertError::Stored {
            object: origin.clone(),
            message: format!("data key {key:?} is not UTF-8 PEM"),
        })
    };
    let (ca_crt, ca_key, tls_crt, tls_key) = (
        field(CA_CRT)?,
        field(CA_KEY)?,
        field(TLS_CRT)?,
        field(TLS_KEY)?,
    );
    let bundle_pem = field(BUNDLE).unwrap_or_else(|_| ca_crt.clone());
    let label = |key: &str| format!("{origin} key {key}");
    let ca = Authority::from_pem(&ca_crt, &ca_key, &origin)?;
    let ca_der = load::parse_chain(ca_crt.as_bytes(), Path::new(&label(CA_CRT)))?;
    let ca_info = inspect::parse(Path::new(&label(CA_CRT)), &ca_der[0])?;
    let bundle = bundle::parse(&bundle_pem, Path::new(&label(BUNDLE)))?;
    let serving = load::serving_from_pem(
        tls_crt.as_bytes(),
        Path::new(&label(TLS_CRT)),
        tls_key.as_bytes(),
        Path::new(&label(TLS_KEY)),
        &[],
    )
    .inspect_err(
        |error| tracing::warn!(%error, "stored serving certificate unusable; reissuing it"),
    )
    .ok();
    Ok(Stored {
        serving,
        bundle_pem,
        ca,
        ca_info,
        bundle,
        tls_crt,
        tls_key,
    })
}

/// The Secret to write: `existing` with new data (its resourceVersion is the write
/// precondition), or a new `kubernetes.io/tls` Secret.
pub(super) fn to_secret(
    settings: &SelfManagedSettings,
    existing: Option<&Secret>,
    pems: BTreeMap<&'static str, String>,
) -> Secret {
    let data = pems
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
    match existing {
        // Keep metadata (resourceVersion is the write precondition) and type.
        Some(secret) => Secret {
            data: Some(data),
            string_data: None,
            ..secret.clone()
        },
        None => Secret {
            metadata: ObjectMeta {
                name: Some(settings.secret_name.clone()),
                namespace: Some(settings.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "guardrail-webhook".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(data),
            ..Secret::default()
        },
    }
}

/// Whether `serving` chains to `ca` and is valid for every name in `names`.
pub(super) fn issued_for(ca: &Authority, serving: &ServingMaterial, names: &[String]) -> bool {
    let Ok(ca_der) = load::parse_chain(ca.cert_pem().as_bytes(), Path::new("CA")) else {
        return false;
    };
    let mut roots = RootCertStore::empty();
    if roots.add(ca_der[0].clone()).is_err() {
        return false;
    }
    let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        crate::provider(),
    )
    .build() else {
        return false;
    };
    let Some(leaf) = serving.certified.cert.first() else {
        return false;
    };
    let now = rustls::pki_types::UnixTime::now();
    names.iter().all(|name| {
        ServerName::try_from(name.clone()).is_ok_and(|server_name| {
            verifier
                .verify_server_cert(leaf, &serving.certified.cert[1..], &server_name, &[], now)
                .is_ok()
        })
    })
}
