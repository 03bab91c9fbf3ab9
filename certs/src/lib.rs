//! TLS material for the Guardrail webhook: loading a serving certificate into rustls,
//! generating a CA and serving certificate, hot rotation, expiry, mTLS and self-managed
//! certificates in the cluster.
//!
//! The webhook binary only talks to this crate through [`TlsArgs`] (flattened into its
//! `serve` command), [`ServingTls`] and [`GenerateArgs`] / [`generate`] (its
//! `certs generate` command), so this crate can grow without touching the webhook.

mod args;
mod client_auth;
mod error;
mod generate;
mod inspect;
mod load;
mod metrics;
mod reload;
mod self_managed;
mod serving;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use args::*;
pub use error::CertError;
pub use generate::{
    ca_bundle_base64, generate, service_dns_names, Authority, GenerateArgs, Issued, Validity,
};
pub use inspect::{inspect_certificate, CertInfo};
pub use load::inspect_pem_file;
pub use metrics::CertMetrics;
pub use self_managed::{SelfManaged, SelfManagedSettings};
pub use serving::ServingTls;

/// The workspace's one crypto provider (aws-lc-rs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
