//! Guardrail admission webhook: see README.md.

pub mod signatures;
