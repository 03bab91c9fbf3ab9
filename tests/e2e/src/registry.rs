//! Support for the registry end-to-end tests.
