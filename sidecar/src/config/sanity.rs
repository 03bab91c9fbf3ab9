//! The `sanity:` section: which output checks run and their thresholds.

use serde::Deserialize;

use crate::error::SidecarError;

/// Default bound on the response bytes teed for checking (1 MiB); larger bodies pass
/// through and are counted as unchecked.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default tolerance for "probabilities in a row sum to 1".
pub const DEFAULT_PROBABILITY_EPSILON: f64 = 1e-3;
/// Default degenerate-repetition threshold: the same character (or word) repeated more
/// than this many times in a row in generated text.
pub const DEFAULT_MAX_REPEAT: usize = 32;

/// Which protocol's checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Detected per request from the path (default).
    #[default]
    Auto,
    /// KServe V1: `/v1/models/<m>:predict`.
    KserveV1,
    /// Open Inference Protocol (KServe V2): `/v2/models/<m>/infer`.
    OipV2,
    /// OpenAI-compatible completions and chat completions.
    Openai,
    /// Only custom rules and score drift.
    None,
}

/// The `sanity:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SanityConfig {
    /// Bytes teed per response for checking (default 1 MiB; 0 disables checks).
    pub max_body_bytes: usize,
    /// Protocol whose checks apply (default `auto`, from the path).
    pub protocol: Protocol,
    /// KServe V1: also check every prediction is a probability (or a row of them that
    /// sums to 1 ± `probabilityEpsilon`). Default false.
    pub probabilities: bool,
    /// Tolerance of the row-sum check (default 1e-3).
    pub probability_epsilon: f64,
    /// OIP v2: output names that must be present (default none).
    pub expected_outputs: Vec<String>,
    /// OpenAI: degenerate-repetition threshold (default 32).
    pub max_repeat: usize,
    /// Custom rules applied to every checked JSON response.
    pub rules: Vec<RuleConfig>,
    /// Score drift (PSI) against a reference histogram; off by default.
    pub score: Option<ScoreDriftConfig>,
}

impl Default for SanityConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            protocol: Protocol::Auto,
            probabilities: false,
            probability_epsilon: DEFAULT_PROBABILITY_EPSILON,
            expected_outputs: Vec::new(),
            max_repeat: DEFAULT_MAX_REPEAT,
            rules: Vec::new(),
            score: None,
        }
    }
}

/// A custom rule: the value at a JSON Pointer must satisfy a constraint. A missing
/// value fails the rule. If the pointer ends at an array, every element is checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    /// Short name; becomes the `check` label `rule:<name>` (keep the set small).
    pub name: String,
    /// RFC 6901 JSON Pointer, e.g. `/predictions`.
    pub pointer: String,
    /// The constraint.
    #[serde(flatten)]
    pub constraint: RuleConstraint,
}

/// A rule's constraint; exactly one per rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleConstraint {
    /// Numbers within `[min, max]` (either bound optional).
    Range { min: Option<f64>, max: Option<f64> },
    /// Value equal to one of these JSON values.
    Enum(Vec<serde_json::Value>),
    /// Non-empty string, array or object (and not null).
    NonEmpty(bool),
    /// String matching this regular expression.
    Regex(String),
}

/// Score drift: a histogram of the window's scores is compared with `reference` by
/// the Population Stability Index.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoreDriftConfig {
    /// JSON Pointer to the score, or to an array of scores (nested arrays flatten).
    pub pointer: String,
    /// Inner bin edges, strictly increasing: n edges make n+1 bins.
    pub edges: Vec<f64>,
    /// Reference share (or count) per bin, `edges.len() + 1` non-negative numbers.
    pub reference: Vec<f64>,
}

impl SanityConfig {
    pub(crate) fn validate(&self) -> Result<(), SidecarError> {
        if !(self.probability_epsilon.is_finite() && self.probability_epsilon >= 0.0) {
            return Err(SidecarError::invalid(
                "sanity.probabilityEpsilon",
                "must be a finite number >= 0",
            ));
        }
        if self.max_repeat < 2 {
            return Err(SidecarError::invalid("sanity.maxRepeat", "must be >= 2"));
        }
        for rule in &self.rules {
            if rule.name.is_empty() || rule.name.len() > 40 {
                return Err(SidecarError::invalid(
                    "sanity.rules[].name",
                    "must be 1..=40 characters (it is a metric label)",
                ));
            }
            check_pointer("sanity.rules[].pointer", &rule.pointer)?;
            match &rule.constraint {
                RuleConstraint::Regex(r) => {
                    regex::Regex::new(r).map_err(|e| {
                        SidecarError::invalid(
                            "sanity.rules[].regex",
                            format!("rule `{}`: {e}", rule.name),
                        )
                    })?;
                }
                RuleConstraint::Range { min, max } => {
                    if let (Some(a), Some(b)) = (min, max) {
                        if a > b {
                            return Err(SidecarError::invalid(
                                "sanity.rules[].range",
                                format!("rule `{}`: min {a} > max {b}", rule.name),
                            ));
                        }
                    }
                }
                RuleConstraint::Enum(v) if v.is_empty() => {
                    return Err(SidecarError::invalid(
                        "sanity.rules[].enum",
                        format!("rule `{}`: needs at least one value", rule.name),
                    ));
                }
                _ => {}
            }
        }
        if let Some(score) = &self.score {
            check_pointer("sanity.score.pointer", &score.pointer)?;
            if score.edges.is_empty() || score.edges.windows(2).any(|w| w[0] >= w[1]) {
                return Err(SidecarError::invalid(
                    "sanity.score.edges",
                    "needs at least one edge, strictly increasing",
                ));
            }
            if score.reference.len() != score.edges.len() + 1 {
                return Err(SidecarError::invalid(
                    "sanity.score.reference",
                    format!(
                        "needs edges.len() + 1 = {} bins, got {}",
                        score.edges.len() + 1,
                        score.reference.len()
                    ),
                ));
            }
            if score.reference.iter().any(|v| !v.is_finite() || *v < 0.0)
                || score.reference.iter().sum::<f64>() <= 0.0
            {
                return Err(SidecarError::invalid(
                    "sanity.score.reference",
                    "needs finite non-negative bins with a positive total",
                ));
            }
        }
        Ok(())
    }
}

fn check_pointer(field: &'static str, pointer: &str) -> Result<(), SidecarError> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(SidecarError::invalid(
            field,
            format!("`{pointer}` is not a JSON Pointer (must start with `/`)"),
        ));
    }
    Ok(())
}
