//! The outcome of judging one workload, and its wording for users.

use std::collections::HashSet;

use crate::policy::Violation;

/// A violation with whether it denies (enforced) or only warns (audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub violation: Violation,
    pub enforced: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the object was not checked at all, if it was not.
    pub skipped: Option<String>,
    pub findings: Vec<Finding>,
    /// Not violations, never deny, but the user must see them: an image allowed without
    /// full verification (signatures `onError: allow`, `noMatch: warn`).
    pub notices: Vec<Violation>,
    /// A signature violation is there because a registry could not be read.
    pub unverifiable: bool,
}

impl Verdict {
    pub fn skipped(reason: String) -> Self {
        Self {
            skipped: Some(reason),
            findings: Vec::new(),
            notices: Vec::new(),
            unverifiable: false,
        }
    }

    pub fn judged(findings: Vec<Finding>, notices: Vec<Violation>) -> Self {
        Self {
            skipped: None,
            findings,
            notices,
            unverifiable: false,
        }
    }

    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(|f| f.enforced)
    }

    /// Turns enforced findings already present in `old` into warnings: an UPDATE must
    /// not be blocked by what the object already had (e.g. a controller relabelling a
    /// pod admitted before Guardrail was installed), only by what it introduces.
    pub fn grandfather(mut self, old: &Verdict) -> Self {
        let existing: HashSet<&Violation> = old.findings.iter().map(|f| &f.violation).collect();
        for finding in &mut self.findings {
            if finding.enforced && existing.contains(&finding.violation) {
                finding.enforced = false;
            }
        }
        self
    }

    /// The denial message: every enforced violation, one per line.
    pub fn denial_message(&self, object: &str) -> String {
        let denied: Vec<&Finding> = self.findings.iter().filter(|f| f.enforced).collect();
        let mut message = format!(
            "Guardrail denied {object}: {} violation{}",
            denied.len(),
            if denied.len() == 1 { "" } else { "s" }
        );
        for finding in denied {
            message.push_str("\n- ");
            message.push_str(&finding.violation.to_string());
        }
        message
    }

    /// Admission warnings: every finding that does not deny, then every notice.
    pub fn warnings(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| !f.enforced)
            .map(|f| &f.violation)
            .chain(&self.notices)
            .map(|v| format!("guardrail: {v}"))
            .collect()
    }
}
