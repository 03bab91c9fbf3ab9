//! Kubernetes API emulator (test support).
