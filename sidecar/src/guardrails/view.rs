//! What one decision is made from: the Knative Service as read (and its owning
//! InferenceService when KServe manages it), and the write a decision produces.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    knative::{self, Role, TrafficError},
    kserve, records,
};

/// The kind of object a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    KnativeService,
    InferenceService,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KnativeService => "services.serving.knative.dev",
            Self::InferenceService => "inferenceservices.serving.kserve.io",
        }
    }
}

/// The Service (and InferenceService) at one resourceVersion.
#[derive(Debug, Clone)]
pub struct View {
    pub service: Value,
    pub isvc: Option<Value>,
}

impl View {
    /// The object Guardrail patches and annotates: the InferenceService when KServe
    /// owns the Service (its controller would revert a patched Service).
    pub fn subject(&self) -> (Subject, &Value) {
        match &self.isvc {
            Some(i) => (Subject::InferenceService, i),
            None => (Subject::KnativeService, &self.service),
        }
    }

    pub fn subject_name(&self) -> String {
        let (_, obj) = self.subject();
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Annotations of the Service, overlaid by those of the InferenceService.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = records::annotations(&self.service);
        if let Some(i) = &self.isvc {
            a.extend(records::annotations(i));
        }
        a
    }

    /// The role of `revision`.
    pub fn role(&self, revision: &str) -> Result<Role, TrafficError> {
        let traffic = knative::resolve(&self.service)?;
        let latest = self
            .service
            .pointer("/status/latestReadyRevisionName")
            .and_then(Value::as_str);
        let role = knative::role(&traffic, revision, latest);
        Ok(match &self.isvc {
            Some(i) => kserve::role(i, revision, &role),
            None => role,
        })
    }

    /// A merge patch of the subject, conditional on the resourceVersion it was
    /// computed from (a concurrent change makes it fail with 409).
    pub fn patch(&self, annotations: Map<String, Value>, spec: Option<Value>) -> Value {
        let (_, obj) = self.subject();
        let mut patch = json!({
            "metadata": {
                "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
                "annotations": Value::Object(annotations),
            }
        });
        if let Some(spec) = spec {
            patch["spec"] = spec;
        }
        patch
    }
}

/// What a write does, for logs, Events and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Rollback {
        revision: String,
        stable: String,
        reason: String,
    },
    RecordStep {
        revision: String,
        percent: i64,
    },
    Promote {
        revision: String,
        from: i64,
        to: i64,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rollback { .. } => "rollback",
            Self::RecordStep { .. } => "step",
            Self::Promote { .. } => "promotion",
        }
    }

    /// Identifies the action without its changing numbers (dry-run logs it once).
    pub fn key(&self) -> String {
        match self {
            Self::Rollback { revision, .. } => format!("rollback {revision}"),
            Self::RecordStep { revision, percent } => format!("step {revision} {percent}"),
            Self::Promote { revision, to, .. } => format!("promote {revision} {to}"),
        }
    }

    /// The Event reason and note.
    pub fn event(&self, subject: Subject) -> (&'static str, String) {
        let how = match subject {
            Subject::KnativeService => "spec.traffic",
            Subject::InferenceService => "spec.predictor.canaryTrafficPercent",
        };
        match self {
            Self::Rollback {
                revision,
                stable,
                reason,
            } => (
                "CanaryRolledBack",
                format!(
                    "guardrail rolled back revision {revision} to {stable} via {how}: {reason}"
                ),
            ),
            Self::RecordStep { revision, percent } => (
                "PromotionStepStarted",
                format!("revision {revision} started its {percent}% step"),
            ),
            Self::Promote { revision, from, to } => (
                "CanaryPromoted",
                format!("guardrail promoted revision {revision} from {from}% to {to}% via {how}"),
            ),
        }
    }
}

/// A computed write: send `patch` to the subject named `name`.
#[derive(Debug, Clone)]
pub struct Write {
    pub subject: Subject,
    pub name: String,
    pub patch: Value,
    pub action: Action,
}
