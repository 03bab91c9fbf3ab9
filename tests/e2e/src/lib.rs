//! Shared support for the end-to-end tests in `tests/e2e/tests/`.
//!
//! Each module belongs to one area; `bins` and `process` are shared by all.

pub mod bins;
pub mod process;

pub mod kserve;
pub mod prometheus;
pub mod registry;
pub mod sidecar;
pub mod webhook;
