//! Reading PEM files into rustls material, with every start-up check applied: the chain
//! parses, the leaf is currently valid, covers the service names, and matches the key.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::{
    inspect::{self, CertInfo},
    CertError,
};

/// A validated serving certificate chain and key, ready for the resolver.
#[derive(Debug, Clone)]
pub struct ServingMaterial {
    pub certified: Arc<CertifiedKey>,
    pub leaf: CertInfo,
}

/// Where serving material comes from and what it must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct ServingSource {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// DNS names the leaf must cover (empty: no SAN check).
    pub required_names: Vec<String>,
}

impl ServingSource {
    /// Reads and validates the files. Used at start-up (errors are fatal) and on every
    /// reload (errors keep the previous material).
    pub fn load(&self) -> Result<(ServingMaterial, Vec<u8>), CertError> {
        let cert_pem = read(&self.cert, "certificate")?;
        let key_pem = read(&self.key, "private key")?;
        let material = serving_from_pem(
            &cert_pem,
            &self.cert,
            &key_pem,
            &self.key,
            &self.required_names,
        )?;
        let mut fingerprint = cert_pem;
        fingerprint.extend_from_slice(&key_pem);
        Ok((material, fingerprint))
    }
}

/// Validates a PEM chain and key; the paths only label error messages (self-managed
/// mode passes the Secret's name).
pub(crate) fn serving_from_pem(
    cert_pem: &[u8],
    cert_origin: &Path,
    key_pem: &[u8],
    key_origin: &Path,
    required_names: &[String],
) -> Result<ServingMaterial, CertError> {
    let chain = parse_chain(cert_pem, cert_origin)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Invalid {
        path: key_origin.to_path_buf(),
        message: format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    let leaf = inspect::parse(cert_origin, &chain[0])?;
    inspect::check_current(cert_origin, &leaf, inspect::unix_now())?;
    if !required_names.is_empty() {
        inspect::check_names(cert_origin, &leaf, required_names)?;
    }
    let provider = crate::provider();
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::Invalid {
                path: key_origin.to_path_buf(),
                message: format!("private key cannot be used for TLS: {e}"),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(CertError::Invalid {
                path: key_origin.to_path_buf(),
                message: format!(
                    "private key does not match the certificate in {} (serial {}): {e}; \
                     the key and certificate files must come from the same issuance",
                    cert_origin.display(),
                    leaf.serial
                ),
            })
        }
    }
    Ok(ServingMaterial {
        certified: Arc::new(certified),
        leaf,
    })
}

/// Reads a file, naming `what` it should contain in the error.
pub(crate) fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The facts of every certificate in a PEM file (leaf first), e.g. to compare serials.
pub fn inspect_pem_file(path: &Path) -> Result<Vec<CertInfo>, CertError> {
    parse_chain(&read(path, "certificate")?, path)?
        .iter()
        .map(|der| inspect::parse(path, der))
        .collect()
}

/// Parses PEM certificates; at least one is required.
pub(crate) fn parse_chain(
    pem: &[u8],
    origin: &Path,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid {
            path: origin.to_path_buf(),
            message: format!("not a PEM certificate chain: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::Invalid {
            path: origin.to_path_buf(),
            message: "no CERTIFICATE block found (expected PEM, leaf first)".into(),
        });
    }
    Ok(certs)
}
