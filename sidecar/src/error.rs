//! The crate's error type: everything that can stop the sidecar from starting.

use std::net::SocketAddr;

/// Errors at the crate boundary (start-up and configuration). Per-request failures
/// never surface here: they become 502/503/504 responses and metrics.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot read config file {path}: {source}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    ParseConfig { path: String, message: String },
    #[error("invalid config field `{field}`: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("cannot listen on {addr} ({what}): {source}; pick a free port with --{what}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl SidecarError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}
