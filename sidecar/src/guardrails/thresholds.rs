//! Guardrail thresholds and the per-service annotations that override them.
//!
//! An annotation that does not parse is reported and ignored: the configured threshold
//! keeps guarding (failing open to "no guardrail" would be the worse surprise).

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::error::SidecarError;

/// Annotation prefix of everything Guardrail reads or writes on a Service.
pub const PREFIX: &str = "guardrail.dev/";
pub const MAX_ERROR_RATIO: &str = "guardrail.dev/max-error-ratio";
pub const MAX_P99: &str = "guardrail.dev/max-p99";
pub const MAX_SANITY_FAILURE_RATIO: &str = "guardrail.dev/max-sanity-failure-ratio";
pub const MAX_PSI: &str = "guardrail.dev/max-psi";
pub const MAX_ERROR_RATIO_INCREASE: &str = "guardrail.dev/max-error-ratio-increase";
pub const MAX_SLOW_SHARE_VS_STABLE: &str = "guardrail.dev/max-slow-share-vs-stable";
pub const MIN_REQUESTS: &str = "guardrail.dev/min-requests";

/// Default largest error ratio (5xx, grpc errors, upstream failures).
pub const DEFAULT_MAX_ERROR_RATIO: f64 = 0.05;
/// Default largest ratio of checked outputs failing a sanity check (NaN, rules).
pub const DEFAULT_MAX_SANITY_FAILURE_RATIO: f64 = 0.05;
/// Default largest PSI of scores: 0.25 is the usual "significant shift" mark.
pub const DEFAULT_MAX_PSI: f64 = 0.25;
/// Default largest increase of the canary's error ratio over the stable's (absolute:
/// 0.5% → 2.5% is allowed, 0.5% → 4% is not).
pub const DEFAULT_MAX_ERROR_RATIO_INCREASE: f64 = 0.02;
/// Default largest share of canary requests slower than the stable's p99 (the stable
/// itself has 1% there): 5% means the canary's p95 may reach the stable's p99.
pub const DEFAULT_MAX_SLOW_SHARE_VS_STABLE: f64 = 0.05;

/// Limits a revision must stay within; `None` disables a guardrail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Thresholds {
    /// Largest error ratio (default 0.05).
    pub max_error_ratio: Option<f64>,
    /// Largest p99 latency (default none: latency is model-specific).
    #[serde(with = "humantime_serde")]
    pub max_p99: Option<Duration>,
    /// Largest sanity failure ratio (default 0.05).
    pub max_sanity_failure_ratio: Option<f64>,
    /// Largest score drift PSI (default 0.25; needs `sanity.score`).
    pub max_psi: Option<f64>,
    /// Largest canary error ratio minus the stable's over the same period (default
    /// 0.02; skipped while the stable revision reports no data).
    pub max_error_ratio_increase: Option<f64>,
    /// Largest share of canary requests slower than the stable's p99 over the same
    /// period (default 0.05; skipped while the stable's p99 cannot be bounded).
    pub max_slow_share_vs_stable: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_error_ratio: Some(DEFAULT_MAX_ERROR_RATIO),
            max_p99: None,
            max_sanity_failure_ratio: Some(DEFAULT_MAX_SANITY_FAILURE_RATIO),
            max_psi: Some(DEFAULT_MAX_PSI),
            max_error_ratio_increase: Some(DEFAULT_MAX_ERROR_RATIO_INCREASE),
            max_slow_share_vs_stable: Some(DEFAULT_MAX_SLOW_SHARE_VS_STABLE),
        }
    }
}

impl Thresholds {
    pub fn validate(&self) -> Result<(), SidecarError> {
        for (field, ratio) in [
            ("guardrails.thresholds.maxErrorRatio", self.max_error_ratio),
            (
                "guardrails.thresholds.maxSanityFailureRatio",
                self.max_sanity_failure_ratio,
            ),
            (
                "guardrails.thresholds.maxErrorRatioIncrease",
                self.max_error_ratio_increase,
            ),
            (
                "guardrails.thresholds.maxSlowShareVsStable",
                self.max_slow_share_vs_stable,
            ),
        ] {
            if let Some(r) = ratio {
                check_ratio(r).map_err(|m| SidecarError::invalid(field, m))?;
            }
        }
        if let Some(p) = self.max_psi {
            check_psi(p).map_err(|m| SidecarError::invalid("guardrails.thresholds.maxPsi", m))?;
        }
        if self.max_p99.is_some_and(|d| d.is_zero()) {
            return Err(SidecarError::invalid(
                "guardrails.thresholds.maxP99",
                "must be > 0 (omit it to disable the p99 guardrail)",
            ));
        }
        Ok(())
    }
}

/// The judgement rules in force for one Service: thresholds plus the request floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub thresholds: Thresholds,
    pub min_requests: u64,
}

/// An annotation that could not be used, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}={value:?} ignored: {message}")]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub value: String,
    pub message: String,
}

impl Rules {
    /// `base` with the Service's annotation overrides applied; bad or forbidden
    /// annotations are returned alongside (and leave the base value in force).
    ///
    /// `policy` bounds what annotations may do (`guardrails.overrides`): switch a
    /// guardrail off, loosen a limit, raise the request floor.
    pub fn with_overrides(
        base: &Rules,
        policy: &Overrides,
        annotations: &BTreeMap<String, String>,
    ) -> (Rules, Vec<AnnotationError>) {
        let mut rules = base.clone();
        let mut errors = Vec::new();
        let mut apply = |key: &'static str, f: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(value) = annotations.get(key) {
                if let Err(message) = f(value.trim()) {
                    errors.push(AnnotationError {
                        annotation: key,
                        value: value.clone(),
                        message,
                    });
                }
            }
        };
        let t = &mut rules.thresholds;
        apply(MAX_ERROR_RATIO, &mut |v| {
            t.max_error_ratio = bounded(
                base.thresholds.max_error_ratio,
                optional(v, |v| parse_f64(v).and_then(check_ratio))?,
                policy,
            )?;
            Ok(())
        });
        apply(MAX_SANITY_FAILURE_RATIO, &mut |v| {
            t.max_sanity_failure_ratio = bounded(
                base.thresholds.max_sanity_failure_ratio,
                optional(v, |v| parse_f64(v).and_then(check_ratio))?,
                policy,
            )?;
            Ok(())
        });
        apply(MAX_ERROR_RATIO_INCREASE, &mut |v| {
            t.max_error_ratio_increase = bounded(
                base.thresholds.max_error_ratio_increase,
                optional(v, |v| parse_f64(v).and_then(check_ratio))?,
                policy,
            )?;
            Ok(())
        });
        apply(MAX_SLOW_SHARE_VS_STABLE, &mut |v| {
            t.max_slow_share_vs_stable = bounded(
                base.thresholds.max_slow_share_vs_stable,
                optional(v, |v| parse_f64(v).and_then(check_ratio))?,
                policy,
            )?;
            Ok(())
        });
        apply(MAX_PSI, &mut |v| {
            t.max_psi = bounded(
                base.thresholds.max_psi,
                optional(v, |v| parse_f64(v).and_then(check_psi))?,
                policy,
            )?;
            Ok(())
        });
        apply(MAX_P99, &mut |v| {
            t.max_p99 = bounded(
                base.thresholds.max_p99,
                optional(v, parse_duration)?,
                policy,
            )?;
            Ok(())
        });
        let mut min_requests = rules.min_requests;
        apply(MIN_REQUESTS, &mut |v| {
            let n = v
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or("expected an integer >= 1, e.g. \"50\"")?;
            // A huge floor is "off" in disguise: nothing is ever decided.
            if n > policy.max_min_requests {
                return Err(format!(
                    "above the largest floor an annotation may set, {} (guardrails.overrides.maxMinRequests)",
                    policy.max_min_requests
                ));
            }
            if !policy.allow_loosen && n > base.min_requests {
                return Err(format!(
                    "may only lower the configured floor of {} (guardrails.overrides.allowLoosen: false)",
                    base.min_requests
                ));
            }
            min_requests = n;
            Ok(())
        });
        rules.min_requests = min_requests;
        (rules, errors)
    }
}

/// What annotations may do to the configured rules (`guardrails.overrides`). Anyone
/// who may annotate the Service may use them; see SECURITY.md.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Overrides {
    /// An annotation may switch a guardrail off with `off` (default true).
    pub allow_off: bool,
    /// An annotation may loosen a limit (raise a ratio, lengthen `maxP99`, raise the
    /// request floor) beyond the configured value (default true); when false,
    /// annotations may only tighten.
    pub allow_loosen: bool,
    /// Largest request floor (`guardrail.dev/min-requests`) an annotation may set
    /// (default 1000).
    pub max_min_requests: u64,
    /// An annotation may set `guardrail.dev/deadline-action: promote`, promoting an
    /// undecided canary at its deadline (default true).
    pub allow_deadline_promote: bool,
}

/// Default of [`Overrides::max_min_requests`].
pub const DEFAULT_MAX_MIN_REQUESTS: u64 = 1000;

impl Default for Overrides {
    fn default() -> Self {
        Self {
            allow_off: true,
            allow_loosen: true,
            max_min_requests: DEFAULT_MAX_MIN_REQUESTS,
            allow_deadline_promote: true,
        }
    }
}

/// `new` (from an annotation) if `policy` lets it replace `base` (the configured
/// limit; `None` = off): switching off and loosening may be forbidden; turning a
/// guardrail on or tightening it never is.
fn bounded<T: PartialOrd + std::fmt::Debug>(
    base: Option<T>,
    new: Option<T>,
    policy: &Overrides,
) -> Result<Option<T>, String> {
    match (&base, &new) {
        (Some(_), None) if !policy.allow_off => Err(
            "switching this guardrail off by annotation is forbidden (guardrails.overrides.allowOff: false)"
                .into(),
        ),
        (Some(b), Some(n)) if !policy.allow_loosen && n > b => Err(format!(
            "may only tighten the configured limit {b:?} (guardrails.overrides.allowLoosen: false)"
        )),
        _ => Ok(new),
    }
}

/// `off` disables a guardrail; anything else must parse.
fn optional<T>(v: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v.eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        parse(v).map(Some)
    }
}

fn parse_f64(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .map_err(|_| "expected a number, e.g. \"0.05\", or \"off\"".to_string())
}

pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected a positive duration, e.g. \"500ms\" or \"10m\"".to_string())
}

fn check_ratio(r: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not a ratio in 0..=1"))
    }
}

fn check_psi(p: f64) -> Result<f64, String> {
    if p.is_finite() && p >= 0.0 {
        Ok(p)
    } else {
        Err(format!("{p} must be a finite number >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Rules {
        Rules {
            thresholds: Thresholds::default(),
            min_requests: 5,
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_override_and_off_disables() {
        let (rules, errors) = Rules::with_overrides(
            &base(),
            &Overrides::default(),
            &annotations(&[
                (MAX_ERROR_RATIO, "0.01"),
                (MAX_P99, "250ms"),
                (MAX_PSI, "off"),
                (MIN_REQUESTS, "20"),
                (MAX_ERROR_RATIO_INCREASE, "off"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules.thresholds.max_error_ratio, Some(0.01));
        assert_eq!(rules.thresholds.max_p99, Some(Duration::from_millis(250)));
        assert_eq!(rules.thresholds.max_psi, None);
        assert_eq!(
            rules.thresholds.max_sanity_failure_ratio,
            Some(DEFAULT_MAX_SANITY_FAILURE_RATIO)
        );
        assert_eq!(rules.min_requests, 20);
        assert_eq!(rules.thresholds.max_error_ratio_increase, None);
    }

    #[test]
    fn bad_annotations_are_reported_and_keep_the_base_value() {
        let (rules, errors) = Rules::with_overrides(
            &base(),
            &Overrides::default(),
            &annotations(&[
                (MAX_ERROR_RATIO, "5%"),
                (MAX_SANITY_FAILURE_RATIO, "1.5"),
                (MAX_P99, "fast"),
                (MIN_REQUESTS, "0"),
            ]),
        );
        assert_eq!(rules, base());
        let names: Vec<_> = errors.iter().map(|e| e.annotation).collect();
        assert_eq!(
            names,
            [
                MAX_ERROR_RATIO,
                MAX_SANITY_FAILURE_RATIO,
                MAX_P99,
                MIN_REQUESTS
            ]
        );
        assert!(errors[1].to_string().contains("1.5 is not a ratio"));
    }

    #[test]
    fn operators_can_forbid_off_and_loosening_but_never_tightening() {
        let strict = Overrides {
            allow_off: false,
            allow_loosen: false,
            ..Overrides::default()
        };
        let (rules, errors) = Rules::with_overrides(
            &base(),
            &strict,
            &annotations(&[
                (MAX_ERROR_RATIO, "off"),
                (MAX_SANITY_FAILURE_RATIO, "0.5"),
                (MAX_PSI, "0.1"),
                (MAX_P99, "2s"),
                (MIN_REQUESTS, "50"),
            ]),
        );
        let names: Vec<_> = errors.iter().map(|e| e.annotation).collect();
        assert_eq!(
            names,
            [MAX_ERROR_RATIO, MAX_SANITY_FAILURE_RATIO, MIN_REQUESTS]
        );
        assert!(
            errors[0].to_string().contains("allowOff: false"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].to_string().contains("only tighten"),
            "{}",
            errors[1]
        );
        // Forbidden overrides keep the configured values; tightening and turning a
        // guardrail on (p99 is off by default) are applied.
        assert_eq!(
            rules.thresholds.max_error_ratio,
            Some(DEFAULT_MAX_ERROR_RATIO)
        );
        assert_eq!(
            rules.thresholds.max_sanity_failure_ratio,
            Some(DEFAULT_MAX_SANITY_FAILURE_RATIO)
        );
        assert_eq!(rules.thresholds.max_psi, Some(0.1));
        assert_eq!(rules.thresholds.max_p99, Some(Duration::from_secs(2)));
        assert_eq!(rules.min_requests, 5);
        // By default a floor is bounded all the same: a huge one would decide nothing.
        let (rules, errors) = Rules::with_overrides(
            &base(),
            &Overrides::default(),
            &annotations(&[(MIN_REQUESTS, "1000000")]),
        );
        assert_eq!(rules.min_requests, 5);
        assert!(
            errors[0].to_string().contains("maxMinRequests"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn config_thresholds_are_validated_with_field_names() {
        let t = Thresholds {
            max_error_ratio: Some(2.0),
            ..Thresholds::default()
        };
        let e = t.validate().expect_err("ratio above 1");
        assert!(e
            .to_string()
            .contains("guardrails.thresholds.maxErrorRatio"));
    }
}
