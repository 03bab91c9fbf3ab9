//! Image signature verification (cosign). Owned by the signatures work.
