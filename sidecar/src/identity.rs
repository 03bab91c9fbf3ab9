//! Who this sidecar measures: the Knative revision and the objects around it.

use serde::Serialize;

/// Identity of the measured revision. Filled from flags or the environment Knative and
/// the downward API set (`K_REVISION`, `K_CONFIGURATION`, `K_SERVICE`, `POD_NAMESPACE`,
/// `POD_NAME`); only `revision` is used as a metric label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub revision: String,
    pub configuration: String,
    pub service: String,
    pub namespace: String,
    pub pod: String,
}

impl Identity {
    /// The revision label value; `unknown` outside Knative so metrics still have one.
    pub fn revision_label(&self) -> &str {
        if self.revision.is_empty() {
            "unknown"
        } else {
            &self.revision
        }
    }
}
