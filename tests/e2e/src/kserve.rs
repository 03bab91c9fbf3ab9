//! Support for the kserve end-to-end tests.
