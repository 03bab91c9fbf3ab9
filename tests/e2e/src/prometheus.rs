//! Support for the prometheus end-to-end tests.
