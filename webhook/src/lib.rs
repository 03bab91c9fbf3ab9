//! Guardrail admission webhook: keeps unpinned, unprobed and under-resourced model
//! releases out of Kubernetes. See README.md.
//!
//! Layout: [`workload`] reads any pod-making object into one shape, [`policy`] holds the
//! checks, [`engine`] runs them under a [`config::Config`], [`admission`] turns an
//! AdmissionReview into an answer, [`server`] serves it over TLS, and [`check`] runs the
//! same engine over manifests on disk. [`inject`] plans the sidecar injection `/mutate`
//! answers with.

pub mod admission;
pub mod check;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod image;
pub mod inject;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod signatures;
pub mod workload;

pub use config::Config;
pub use engine::{Engine, Verdict};
pub use error::Error;
