//! A Kubernetes-style label selector (`matchLabels` + `matchExpressions`), with the same
//! semantics as `metav1.LabelSelector`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// True when every requirement holds for `labels` (an empty selector matches all).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let labels_ok = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        labels_ok
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Same rules as the API server: `In`/`NotIn` need values, `Exists`/`DoesNotExist`
    /// must have none. Returns the offending field (relative) and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, r) in self.match_expressions.iter().enumerate() {
            if r.key.trim().is_empty() {
                return Err((
                    format!("matchExpressions[{i}].key"),
                    "must not be empty".into(),
                ));
            }
            let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
            if needs_values && r.values.is_empty() {
                return Err((
                    format!("matchExpressions[{i}].values"),
                    format!("operator {:?} needs at least one value", r.operator),
                ));
            }
            if !needs_values && !r.values.is_empty() {
                return Err((
                    format!("matchExpressions[{i}].values"),
                    format!("operator {:?} takes no values; remove them", r.operator),
                ));
            }
        }
        Ok(())
    }
}
