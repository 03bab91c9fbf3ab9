//! Guardrail sidecar: an in-pod reverse proxy in front of a model server that measures
//! every request of its revision (status, latency, output sanity, score drift).
//!
//! The data path (`proxy`) only ever waits on the upstream: measurements are recorded
//! into a lock-light sliding `window` and pre-resolved `metrics` handles, and evaluators
//! (the guardrails) read `Window::snapshot` and wake on `Window::completed`.

pub mod admin;
pub mod app;
pub mod config;
pub mod error;
pub mod guardrails;
pub mod identity;
pub mod judgement;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod sanity;
pub mod shutdown;
pub mod window;

pub use app::Sidecar;
pub use config::Config;
pub use error::SidecarError;
pub use identity::Identity;
pub use window::{Snapshot, Window};
