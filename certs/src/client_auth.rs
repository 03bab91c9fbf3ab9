//! mTLS: a client-certificate verifier whose trusted CAs can be swapped while the one
//! process-wide `ServerConfig` keeps pointing at it.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
};

use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        WebPkiClientVerifier,
    },
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::{inspect, load, CertError};

/// The CA bundle client certificates must chain to, validated.
pub(crate) struct ClientCa {
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The earliest notAfter of the CAs in the bundle.
    pub earliest_expiry: i64,
    pub fingerprint: Vec<u8>,
}

/// Reads `path` (one or more PEM CA certificates) and builds a verifier that requires a
/// client certificate issued by one of them.
pub(crate) fn load_client_ca(path: &Path) -> Result<ClientCa, CertError> {
    let pem = load::read(path, "client CA bundle")?;
    let certs = load::parse_chain(&pem, path)?;
    let now = inspect::unix_now();
    let mut roots = RootCertStore::empty();
    let mut earliest_expiry = i64::MAX;
    for (index, cert) in certs.iter().enumerate() {
        let info = inspect::parse(path, cert)?;
        inspect::check_current(path, &info, now)?;
        if !info.is_ca {
            return Err(invalid(
                path,
                format!(
                    "certificate #{} ({}) is not a CA (basicConstraints CA:FALSE); --client-ca \
                     must hold the CA that issued the API server's client certificate",
                    index + 1,
                    info.subject
                ),
            ));
        }
        earliest_expiry = earliest_expiry.min(info.not_after);
        roots
            .add(cert.clone())
            .map_err(|e| invalid(path, format!("certificate #{} unusable: {e}", index + 1)))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::provider())
        .build()
        .map_err(|e| invalid(path, format!("cannot build a client verifier: {e}")))?;
    Ok(ClientCa {
        verifier,
        earliest_expiry,
        fingerprint: pem,
    })
}

fn invalid(path: &Path, message: String) -> CertError {
    CertError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// Delegates to the current verifier; `swap` replaces it for later handshakes.
#[derive(Debug)]
pub(crate) struct ReloadingClientVerifier {
    path: PathBuf,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl ReloadingClientVerifier {
    pub fn new(path: PathBuf, verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self {
            path,
            current: RwLock::new(verifier),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn swap(&self, verifier: Arc<dyn ClientCertVerifier>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = verifier;
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No CA hints: they would have to borrow from the swappable state. Clients (the
    /// API server included) then send their configured certificate regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}
