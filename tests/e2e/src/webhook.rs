//! Support for the webhook end-to-end tests.
