//! Kubernetes API emulator (test support).
//!
//! An HTTPS server that the real `kube::Client` (and `kubectl`) talk to, serving the
//! kinds Guardrail uses with the API server's semantics where they matter:
//! resourceVersion conflicts, generation, the status subresource, server-side apply
//! with field managers, watches, CRD schema validation, Knative's traffic rules, and
//! emulated Knative and KServe controllers. Tests seed and inspect state directly, and
//! inject faults (RBAC denials, 409 storms, errors, latency, cut connections, restarts).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_emulator::Error> {
//! let emu = kube_emulator::Emulator::start(kube_emulator::Options::default()).await?;
//! emu.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default}\n")?;
//! let client: kube::Client = emu.client();
//! # let _ = client;
//! emu.faults().conflicts(3);
//! assert!(emu.get("configmaps", "default", "cfg").is_some());
//! # Ok(()) }
//! ```

mod audit;
mod builtin;
mod controllers;
mod emulator;
mod faults;
mod fields;
mod kinds;
mod knative;
mod kserve;
mod meta;
mod schema;
mod selector;
mod server;
mod serviceaccount;
mod state;
mod status;
mod store;
mod tls;
mod webhooks;

pub use audit::AuditEntry;
pub use emulator::{Emulator, InCluster, Options};
pub use faults::Faults;
pub use status::ApiError;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the emulator's public API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube-emulator TLS setup failed: {0}")]
    Tls(String),
    #[error("kube-emulator could not load a CRD schema: {0}")]
    Schema(String),
    #[error("kube-emulator could not listen on {addr}: {source} (is the port taken? use 127.0.0.1:0 for an ephemeral port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kube-emulator could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seed YAML does not parse: {0}")]
    Yaml(String),
    #[error("seed object {what} rejected: {source}")]
    Rejected { what: String, source: Box<ApiError> },
    #[error("unknown resource {0:?}: use a plural, singular, short name or Kind, optionally with .group (e.g. \"ksvc\", \"secrets\", \"inferenceservices.serving.kserve.io\")")]
    UnknownResource(String),
    #[error("kube client configuration failed: {0}")]
    Kube(String),
}

impl std::error::Error for ApiError {}
