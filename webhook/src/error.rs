//! Errors at the crate boundary. Each message says what went wrong, where, and (when it
//! is not obvious) how to fix it.

use std::{net::SocketAddr, path::PathBuf};

use crate::signatures::SignatureError;

/// Everything that can stop `serve` or `check` from running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] guardrail_certs::CertError),
    #[error("cannot listen on {addr}: {source} (is the port in use? pick another with --listen/--metrics-listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch config file {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid config: {message}", path.as_ref().map_or("config".into(), |p| p.display().to_string()))]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
    /// The signature verifier cannot start: a key or trust root that does not load, an
    /// unreadable `--registry-auth` file.
    #[error("{0}")]
    Signatures(SignatureError),
}

impl From<SignatureError> for ConfigError {
    fn from(error: SignatureError) -> Self {
        match error {
            // Same shape as every other config error, so `in_file` adds the file name.
            SignatureError::Config { field, message } => ConfigError::Invalid { field, message },
            other => ConfigError::Signatures(other),
        }
    }
}

impl ConfigError {
    /// Attaches the file name to a parse error.
    pub fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: Some(file.to_path_buf()),
                message,
            },
            ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: format!("{}: {field}", file.display()),
                message,
            },
            other => other,
        }
    }
}
