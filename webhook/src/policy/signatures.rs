//! Signatures: every digest-pinned image must be signed as the `signatures:` rules say.
//! An adapter from [`SignatureVerifier`] (which owns matching, budget, cache and
//! registry access) to the engine's [`ImagePolicy`].

use futures::future::BoxFuture;
use oci_client::Reference;

use super::{ImageFindings, ImagePolicy, PolicyName, Violation};
use crate::{
    signatures::{ImageVerdict, SignatureVerifier},
    workload::ImageUse,
};

/// Shown with every signature violation.
pub const HINT: &str = "sign this digest with a trusted key or identity (cosign sign) \
or adjust signatures.rules";

/// Verifies the signatures of an object's images.
pub struct SignaturePolicy {
    verifier: SignatureVerifier,
}

impl SignaturePolicy {
    pub fn new(verifier: SignatureVerifier) -> Self {
        Self { verifier }
    }
}

impl ImagePolicy for SignaturePolicy {
    fn name(&self) -> PolicyName {
        PolicyName::Signatures
    }

    fn check<'a>(&'a self, images: &'a [ImageUse]) -> BoxFuture<'a, ImageFindings> {
        Box::pin(async move {
            // Only digest-pinned images: the digest policy reports the others, and a tag
            // is never resolved (what it names now is not what the node pulls later).
            let pinned: Vec<(&ImageUse, Reference)> = images
                .iter()
                .filter_map(|image| {
                    let parsed = image.image.ok()?;
                    parsed.digest()?;
                    Some((image, parsed.reference().clone()))
                })
                .collect();
            let refs: Vec<Reference> = pinned.iter().map(|(_, r)| r.clone()).collect();
            // One pod, one budget: the verifier checks every image concurrently.
            let verdicts = self.verifier.check_all(&refs).await;
            let mut findings = ImageFindings::default();
            for ((image, _), verdict) in pinned.into_iter().zip(verdicts) {
                let finding = |message: String| Violation {
                    policy: PolicyName::Signatures,
                    container: Some(image.container.clone()),
                    field: image.field.clone(),
                    message,
                    hint: HINT.to_string(),
                };
                match verdict {
                    ImageVerdict::Allowed => {}
                    ImageVerdict::Denied { reason } => findings.violations.push(finding(reason)),
                    ImageVerdict::Unverifiable { reason } => {
                        findings.unverifiable = true;
                        findings.violations.push(finding(reason))
                    }
                    ImageVerdict::AllowedWithWarning { reason } => {
                        findings.warnings.push(Violation {
                            hint: String::new(),
                            ..finding(reason)
                        })
                    }
                }
            }
            findings
        })
    }
}

#[cfg(test)]
mod tests;
