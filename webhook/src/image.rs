//! Image references, parsed and normalised the way the container runtime does
//! (docker distribution rules via `oci_client::Reference`): `nginx` is
//! `docker.io/library/nginx:latest`, `host:5000/a/b` keeps its registry port, repository
//! paths must be lowercase.

use std::sync::LazyLock;

use oci_client::{ParseError, Reference};

/// A parsed image reference and how it is pinned.
#[derive(Debug, Clone)]
pub struct ImageRef {
    reference: Reference,
    /// The user wrote neither tag nor digest (so the runtime pulls `:latest`).
    implicit_latest: bool,
}

/// Why a string is not a usable image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image is empty")]
    Empty,
    #[error("repository path must be lowercase (the runtime rejects {0:?}); write {1:?}")]
    Uppercase(String, String),
    #[error("malformed digest: {0}")]
    Digest(String),
    #[error("not a valid image reference: {0}")]
    Invalid(String),
}

/// An image as a workload writes it, parsed once where the workload is read: every
/// consumer (exemptions, platform trust, digest and signature policies) reads the same
/// parse, and messages quote what the author wrote.
#[derive(Debug, Clone)]
pub struct Image {
    raw: String,
    parsed: Result<ImageRef, ImageError>,
}

/// Images parsed recently. oci-client matches the reference grammar with a capturing
/// regex (about 100k instructions per image, a fifth of a pod review's cost in callgrind),
/// while the images of a cluster's pods repeat: queue-proxy's in every Knative pod, a
/// model's in each of its replicas. Bounded, so distinct images only evict.
static PARSED: LazyLock<moka::sync::Cache<String, Result<ImageRef, ImageError>>> =
    LazyLock::new(|| moka::sync::Cache::new(PARSED_CAPACITY));
const PARSED_CAPACITY: u64 = 4096;

impl Image {
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let parsed = match PARSED.get(&raw) {
            Some(parsed) => parsed,
            None => {
                let parsed = ImageRef::parse(&raw);
                PARSED.insert(raw.clone(), parsed.clone());
                parsed
            }
        };
        Self { raw, parsed }
    }

    /// A container or volume that names no image (an error in its own right).
    pub fn absent() -> Self {
        Self::new(String::new())
    }

    /// What the object says, verbatim.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn parsed(&self) -> Result<&ImageRef, &ImageError> {
        self.parsed.as_ref()
    }

    /// The parsed reference, if the image is a usable one.
    pub fn ok(&self) -> Option<&ImageRef> {
        self.parsed.as_ref().ok()
    }
}

impl PartialEq for Image {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Image {}

impl<'de> serde::Deserialize<'de> for Image {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<Self, ImageError> {
        if image.trim().is_empty() {
            return Err(ImageError::Empty);
        }
        check_first_component(image)?;
        match Reference::try_from(image) {
            Ok(reference) => {
                if let Some(digest) = reference.digest() {
                    check_digest(digest)?;
                }
                let implicit_latest = reference.digest().is_none() && !has_explicit_tag(image);
                Ok(Self {
                    reference,
                    implicit_latest,
                })
            }
            Err(e) => Err(explain(image, e)),
        }
    }

    /// Normalised form, e.g. `docker.io/library/nginx:1.25@sha256:…`.
    pub fn normalised(&self) -> String {
        self.reference.whole()
    }

    /// Normalised form without tag or digest: `docker.io/library/nginx`.
    pub fn repository(&self) -> String {
        format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository()
        )
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    pub fn tag(&self) -> Option<&str> {
        self.reference.tag()
    }

    pub fn is_implicit_latest(&self) -> bool {
        self.implicit_latest
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

/// oci-spec checks the length for the algorithm; the runtime also needs lowercase hex.
/// Only sha256 is accepted: the OCI spec also registers sha512 (and the runtime's parser
/// takes sha384), but registries, cosign signature tags and our verifier all key on
/// sha256, so any other algorithm could not be verified and is refused up front.
fn check_digest(digest: &str) -> Result<(), ImageError> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    if algorithm != "sha256" {
        return Err(ImageError::Digest(format!(
            "{digest:?} uses {algorithm}; Guardrail accepts sha256 digests only (the digest \
             registries and cosign signatures use): pin the image by its sha256 digest"
        )));
    }
    if hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(ImageError::Digest(format!(
            "{digest:?} must be lowercase hexadecimal"
        )))
    }
}

/// Docker's rule (`splitDockerDomain` in distribution/reference, which containerd and
/// CRI-O use): a first component with an uppercase letter is a registry host even
/// without `.` or `:`, so the runtime pulls `Host/app` from the registry `host`.
/// oci-client files it under docker.io instead; rather than judge an image the
/// runtime would pull from elsewhere, refuse it (found by the `image_reference`
/// fuzz target).
fn check_first_component(image: &str) -> Result<(), ImageError> {
    let name = image.split('@').next().unwrap_or(image);
    let Some((first, _)) = name.split_once('/') else {
        return Ok(());
    };
    if first.contains(['.', ':']) || first == "localhost" || first == first.to_lowercase() {
        return Ok(());
    }
    Err(ImageError::Invalid(format!(
        "the first component {first:?} has uppercase letters, so container runtimes read it \
         as a registry host (without a '.' or ':'): write the registry in lowercase with its \
         domain or port (e.g. \"{}:5000/…\"), or the Docker Hub path in lowercase",
        first.to_lowercase()
    )))
}

/// Whether the last path segment (after any registry `host:port/`) carries a `:tag`.
fn has_explicit_tag(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

fn explain(image: &str, error: ParseError) -> ImageError {
    match error {
        ParseError::NameEmpty => ImageError::Empty,
        ParseError::DigestInvalidFormat
        | ParseError::DigestInvalidLength
        | ParseError::DigestUnsupported => ImageError::Digest(format!(
            "{error}; a digest is sha256: followed by 64 lowercase hex characters"
        )),
        _ if image.contains('@')
            && Reference::try_from(image.split('@').next().unwrap_or("")).is_ok() =>
        {
            ImageError::Digest(format!(
                "{:?} is not a digest; a digest is sha256: followed by 64 lowercase hex characters",
                image.split_once('@').map_or("", |(_, d)| d)
            ))
        }
        _ => {
            // Like docker: if only the case of the repository path is wrong, say so.
            let (name, rest) = split_name(image);
            let lowered = lowercase_path(name);
            if lowered != name && Reference::try_from(format!("{lowered}{rest}")).is_ok() {
                ImageError::Uppercase(image.to_string(), format!("{lowered}{rest}"))
            } else {
                ImageError::Invalid(error.to_string())
            }
        }
    }
}

/// Splits `host/path:tag@digest` into the name and the `:tag@digest` rest.
fn split_name(image: &str) -> (&str, &str) {
    let (name, digest) = match image.find('@') {
        Some(at) => image.split_at(at),
        None => (image, ""),
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].find(':') {
        Some(colon) => (&image[..slash + colon], &image[slash + colon..]),
        None => (name, digest),
    }
}

/// Lowercases the repository path but not the registry host, which may hold uppercase.
fn lowercase_path(name: &str) -> String {
    match name.split_once('/') {
        Some((host, path)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            format!("{host}/{}", path.to_lowercase())
        }
        _ => name.to_lowercase(),
    }
}

#[cfg(test)]
mod tests;
