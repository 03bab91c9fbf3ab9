//! The policies. Image policies see every image of an object at once (and may be async,
//! e.g. a registry lookup); container policies see one serving container at a time.

pub mod digest;
pub mod probes;
pub mod resources;
pub mod signatures;

use std::fmt;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::workload::ImageUse;

/// Names a policy in config, messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    Digest,
    Probes,
    Resources,
    Signatures,
}

impl PolicyName {
    pub const ALL: [PolicyName; 4] = [
        PolicyName::Digest,
        PolicyName::Probes,
        PolicyName::Resources,
        PolicyName::Signatures,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Digest => "digest",
            PolicyName::Probes => "probes",
            PolicyName::Resources => "resources",
            PolicyName::Signatures => "signatures",
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with an object: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Violation {
    pub policy: PolicyName,
    /// Container (or `volume <name>`) the violation is about, if any.
    pub container: Option<String>,
    /// Field path in the object, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] ", self.policy)?;
        if let Some(c) = &self.container {
            write!(f, "container {c:?} ")?;
        }
        write!(f, "({}): {}", self.field, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "; fix: {}", self.hint)?;
        }
        Ok(())
    }
}

/// What an image policy found over one object's images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFindings {
    /// Denied under `enforce`, warned under `audit`.
    pub violations: Vec<Violation>,
    /// Never deny, whatever the mode, but must reach the user: the image is allowed
    /// without being fully checked (e.g. signatures `onError: allow`, `noMatch: warn`).
    pub warnings: Vec<Violation>,
    /// Some violation is there because a registry could not be read, not because the
    /// image is refuted (`check` then suggests `--registry-auth`).
    pub unverifiable: bool,
}

impl From<Vec<Violation>> for ImageFindings {
    fn from(violations: Vec<Violation>) -> Self {
        Self {
            violations,
            warnings: Vec::new(),
            unverifiable: false,
        }
    }
}

/// A policy over all images of one object. Returning a boxed future keeps the trait
/// object-safe so the engine can hold a list of them; a policy that needs the network
/// (signature verification) is one more entry in that list.
pub trait ImagePolicy: Send + Sync {
    fn name(&self) -> PolicyName;
    fn check<'a>(&'a self, images: &'a [ImageUse]) -> BoxFuture<'a, ImageFindings>;
}
