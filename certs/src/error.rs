//! The one error type of this crate. Every variant says which file, field or object it
//! is about, so a refusal to start tells the operator what to fix.

use std::path::PathBuf;

/// Errors of `guardrail-certs`.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read (missing, permissions, ...).
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is unusable (not PEM, expired, wrong key, SANs).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A command-line flag has a value that cannot work.
    #[error("invalid {field}: {message}")]
    Argument {
        field: &'static str,
        message: String,
    },
    /// Creating a key pair or certificate failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// Certificate material stored in the cluster (self-managed mode) is unusable.
    #[error("{object}: {message}")]
    Stored { object: String, message: String },
    /// A Kubernetes API call of self-managed mode failed.
    #[error("{action} {object}: {source}")]
    Kube {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// No usable Kubernetes client configuration (self-managed mode).
    #[error("Kubernetes client configuration: {0}; run in a pod with a service account or pass --kubeconfig")]
    KubeConfig(String),
    /// The file watcher could not be set up.
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
