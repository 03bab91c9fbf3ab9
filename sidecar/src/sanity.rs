//! Output sanity: checks run on a response body teed from the stream (never changed,
//! never waited for). Each failed check has a short, fixed name used as the `check`
//! metric label.

mod json;
mod kserve_v1;
mod oip_v2;
mod openai;
mod read;
mod rules;

use serde_json::Value;

use crate::{
    config::{Protocol, SanityConfig},
    error::SidecarError,
};

pub use kserve_v1::count_instances;
use rules::CompiledRule;

/// Which checks apply to one request, decided from its path (or the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    KserveV1,
    OipV2,
    OpenAi,
    /// Only custom rules and score drift.
    Generic,
}

/// What checking one response found.
#[derive(Debug, Default, PartialEq)]
pub struct Findings<'a> {
    /// Names of the failed checks (empty = sane).
    pub failed: Vec<&'a str>,
    /// Generation ended by its length limit (OpenAI `finish_reason: length`).
    pub truncated: bool,
    /// Scores read for drift.
    pub scores: Vec<f64>,
}

impl Findings<'_> {
    fn fail(&mut self, check: &'static str) {
        if !self.failed.contains(&check) {
            self.failed.push(check);
        }
    }
}

/// The configured checks, compiled once.
/// The built-in checks' names (the `check` label), so their series exist from start-up.
pub const BUILT_IN_CHECKS: [&str; 13] = [
    "invalid_json",
    "non_finite",
    "missing_predictions",
    "empty_predictions",
    "prediction_count",
    "probability",
    "missing_outputs",
    "missing_output",
    "shape_mismatch",
    "datatype",
    "no_choices",
    "empty_content",
    "repetition",
];

pub struct Checker {
    config: SanityConfig,
    rules: Vec<CompiledRule>,
}

impl Checker {
    pub fn new(config: &SanityConfig) -> Result<Self, SidecarError> {
        let rules = config
            .rules
            .iter()
            .map(CompiledRule::new)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config: config.clone(),
            rules,
        })
    }

    /// Every check name a response can fail: the built-in ones and the custom rules'.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        BUILT_IN_CHECKS
            .into_iter()
            .chain(self.rules.iter().map(CompiledRule::label))
    }

    /// Bytes teed per response (0 = checks off).
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// The checks for a request to `path`, or `None` when nothing is checked.
    pub fn detect(&self, path: &str) -> Option<Kind> {
        if self.config.max_body_bytes == 0 {
            return None;
        }
        let generic =
            (!self.rules.is_empty() || self.config.score.is_some()).then_some(Kind::Generic);
        match self.config.protocol {
            Protocol::KserveV1 => Some(Kind::KserveV1),
            Protocol::OipV2 => Some(Kind::OipV2),
            Protocol::Openai => Some(Kind::OpenAi),
            Protocol::None => generic,
            Protocol::Auto => detect_from_path(path).or(generic),
        }
    }

    /// Checks one complete 2xx response body. `instances` is the request's instance
    /// count (KServe V1) when known.
    pub fn check(&self, kind: Kind, instances: Option<usize>, body: &[u8]) -> Findings<'_> {
        // The common cases, a KServe V1 prediction or an OIP v2 answer without custom
        // rules or scores (which need the tree), are judged while parsing, with no JSON
        // tree; anything unusual (non-finite tokens, invalid JSON) takes the tree path.
        if self.rules.is_empty() && self.config.score.is_none() {
            let mut findings = Findings::default();
            let judged = match kind {
                Kind::KserveV1 => kserve_v1::summarize(body, self.config.probability_epsilon)
                    .map(|s| kserve_v1::check_summary(&s, instances, &self.config, &mut findings)),
                Kind::OipV2 => oip_v2::summarize(body).map(|outputs| {
                    oip_v2::judge(&outputs, &self.config.expected_outputs, &mut findings)
                }),
                _ => None,
            };
            if judged.is_some() {
                return findings;
            }
        }
        self.check_tree(kind, instances, body)
    }

    /// `check` on a parsed JSON tree: every protocol, rules and scores.
    fn check_tree(&self, kind: Kind, instances: Option<usize>, body: &[u8]) -> Findings<'_> {
        let mut findings = Findings::default();
        if kind == Kind::OpenAi && openai::is_event_stream(body) {
            openai::check_stream(body, self.config.max_repeat, &mut findings);
            return findings;
        }
        let (value, had_non_finite) = match json::parse_lenient(body) {
            Some(parsed) => parsed,
            None => {
                findings.fail("invalid_json");
                return findings;
            }
        };
        if had_non_finite {
            findings.fail("non_finite");
        }
        match kind {
            Kind::KserveV1 => kserve_v1::check(&value, instances, &self.config, &mut findings),
            Kind::OipV2 => oip_v2::check(&value, &self.config.expected_outputs, &mut findings),
            Kind::OpenAi => openai::check_json(&value, self.config.max_repeat, &mut findings),
            Kind::Generic => {}
        }
        for rule in &self.rules {
            if !rule.holds(&value) {
                findings.failed.push(rule.label());
            }
        }
        if let Some(score) = &self.config.score {
            if let Some(v) = value.pointer(&score.pointer) {
                json::collect_numbers(v, &mut findings.scores);
            }
        }
        findings
    }
}

fn detect_from_path(path: &str) -> Option<Kind> {
    if path.starts_with("/v1/models/") && path.ends_with(":predict") {
        Some(Kind::KserveV1)
    } else if path.starts_with("/v2/models/") && path.ends_with("/infer") {
        Some(Kind::OipV2)
    } else if matches!(
        path,
        "/v1/chat/completions"
            | "/v1/completions"
            | "/openai/v1/chat/completions"
            | "/openai/v1/completions"
    ) {
        Some(Kind::OpenAi)
    } else {
        None
    }
}

/// True for a JSON number that is not finite, or a `null` where a number belongs
/// (KServe's Python server writes NaN as `null`).
fn is_non_finite(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_f64().is_none_or(|f| !f.is_finite()),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
