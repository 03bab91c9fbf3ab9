//! Custom rules: a JSON Pointer and a constraint.

use serde_json::Value;

use crate::{
    config::{RuleConfig, RuleConstraint},
    error::SidecarError,
};

pub(super) struct CompiledRule {
    label: String,
    pointer: String,
    check: Check,
}

enum Check {
    Range { min: f64, max: f64 },
    Enum(Vec<Value>),
    NonEmpty,
    Regex(regex::Regex),
}

impl CompiledRule {
    pub fn new(rule: &RuleConfig) -> Result<Self, SidecarError> {
        let check = match &rule.constraint {
            RuleConstraint::Range { min, max } => Check::Range {
                min: min.unwrap_or(f64::NEG_INFINITY),
                max: max.unwrap_or(f64::INFINITY),
            },
            RuleConstraint::Enum(values) => Check::Enum(values.clone()),
            RuleConstraint::NonEmpty(_) => Check::NonEmpty,
            RuleConstraint::Regex(r) => Check::Regex(regex::Regex::new(r).map_err(|e| {
                SidecarError::invalid("sanity.rules[].regex", format!("rule `{}`: {e}", rule.name))
            })?),
        };
        Ok(Self {
            label: format!("rule:{}", rule.name),
            pointer: rule.pointer.clone(),
            check,
        })
    }

    /// The `check` label of this rule's failures.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the value at the pointer satisfies the constraint (a missing value does
    /// not; for an array, every element must, except for `nonEmpty`).
    pub fn holds(&self, doc: &Value) -> bool {
        let Some(v) = doc.pointer(&self.pointer) else {
            return false;
        };
        match (&self.check, v) {
            (Check::NonEmpty, v) => match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            },
            (_, Value::Array(items)) => {
                !items.is_empty() && items.iter().all(|i| self.holds_one(i))
            }
            (_, v) => self.holds_one(v),
        }
    }

    fn holds_one(&self, v: &Value) -> bool {
        match &self.check {
            Check::Range { min, max } => v.as_f64().is_some_and(|x| x >= *min && x <= *max),
            Check::Enum(values) => values.contains(v),
            Check::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Check::NonEmpty => true,
        }
    }
}
