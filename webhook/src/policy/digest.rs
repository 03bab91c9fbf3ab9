//! Digest pinning: a tag can be moved to other bytes after review; a digest cannot.

use futures::future::BoxFuture;

use super::{ImageFindings, ImagePolicy, PolicyName, Violation};
use crate::{image::ImageError, workload::ImageUse};

/// Every image must name a well-formed digest (`repo@sha256:…` or `repo:tag@sha256:…`).
pub struct DigestPolicy;

impl ImagePolicy for DigestPolicy {
    fn name(&self) -> PolicyName {
        PolicyName::Digest
    }

    fn check<'a>(&'a self, images: &'a [ImageUse]) -> BoxFuture<'a, ImageFindings> {
        let violations: Vec<Violation> = images.iter().filter_map(check_image).collect();
        Box::pin(std::future::ready(violations.into()))
    }
}

/// The violation for one image, if it is not pinned by a well-formed digest.
pub fn check_image(image: &ImageUse) -> Option<Violation> {
    let violation = |message: String, hint: String| Violation {
        policy: PolicyName::Digest,
        container: Some(image.container.clone()),
        field: image.field.clone(),
        message,
        hint,
    };
    let raw = image.image.raw();
    let parsed = match image.image.parsed() {
        Ok(parsed) => parsed,
        Err(ImageError::Empty) => {
            return Some(violation(
                "no image is set".into(),
                "set the image, pinned by digest: registry/repository@sha256:<digest>".into(),
            ))
        }
        Err(ImageError::Uppercase(_, lower)) => {
            return Some(violation(
                format!("image {raw:?} has uppercase letters in its repository path, which the container runtime rejects"),
                format!("write it in lowercase ({lower:?}) and pin it by digest"),
            ))
        }
        Err(e) => {
            return Some(violation(
                format!("image {raw:?}: {e}"),
                "use registry/repository@sha256:<64 lowercase hex characters>".into(),
            ))
        }
    };
    if parsed.digest().is_some() {
        return None;
    }
    let message = if parsed.is_implicit_latest() {
        format!(
            "image {raw:?} has neither tag nor digest, so it means {} (whatever :latest points to at pull time)",
            parsed.normalised()
        )
    } else {
        format!(
            "image {raw:?} is pinned only by tag ({}); a tag can be moved to other bytes",
            parsed.normalised()
        )
    };
    let resolve = parsed.normalised();
    Some(violation(
        message,
        format!(
            "pin it by digest: {}@sha256:<digest> (look it up with `crane digest {resolve}` or `docker buildx imagetools inspect {resolve}`)",
            parsed.repository()
        ),
    ))
}
