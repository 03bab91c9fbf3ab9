//! Support for the sidecar end-to-end tests.
