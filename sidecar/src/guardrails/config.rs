//! The `guardrails:` section of the sidecar config: default thresholds (overridable per
//! Knative Service by annotations), judgement rules and how the Kubernetes API is used.

use std::time::Duration;

use serde::Deserialize;

use super::thresholds::Thresholds;
use crate::error::SidecarError;

/// Default minimum requests in the window before anything is decided.
pub const DEFAULT_MIN_REQUESTS: u64 = 50;
/// Default consecutive breaching evaluations (at least `interval` apart) before acting.
pub const DEFAULT_CONSECUTIVE_BREACHES: u32 = 1;
/// Default period of the evaluation that runs even without traffic.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default shortest gap between completion-triggered evaluations: bounds snapshot cost
/// under heavy traffic while keeping detection far below a second.
pub const DEFAULT_MIN_GAP: Duration = Duration::from_millis(20);
/// Default period of re-reading the Service (annotations, traffic) when nothing happens.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Default bound on 409 re-read/recompute rounds of one write.
pub const DEFAULT_MAX_CONFLICTS: u32 = 10;
/// Default first and largest retry delays for 5xx, timeouts and resets.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(50);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default time allowed for one API request.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(5);
/// Default pause after a 403 before the next attempt (RBAC may get fixed).
pub const DEFAULT_FORBIDDEN_PAUSE: Duration = Duration::from_secs(30);
/// Default step duration when `guardrail.dev/steps` is set without a duration.
pub const DEFAULT_STEP_DURATION: Duration = Duration::from_secs(600);

/// `guardrails:` config section. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct GuardrailsConfig {
    /// Judge and act at all (default true). Guardrails also need `K_SERVICE` and a
    /// namespace; without them the sidecar only measures.
    pub enabled: bool,
    /// Log the exact patch instead of sending it (default false); `--dry-run` sets it.
    pub dry_run: bool,
    /// Default thresholds (annotations on the Service override them).
    pub thresholds: Thresholds,
    /// Requests in the window below which nothing is decided (default 50).
    pub min_requests: u64,
    /// Breaching evaluations, at least `interval` apart, needed to act (default 1).
    pub consecutive_breaches: u32,
    /// Periodic evaluation (default 1 s); completions also trigger one.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Shortest gap between completion-triggered evaluations (default 20 ms).
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// Re-read of the Service when idle (default 5 s).
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Step duration when a Service sets steps but no `step-duration` (default 10 m).
    #[serde(with = "humantime_serde")]
    pub step_duration: Duration,
    /// 409 re-read/recompute rounds before a write is abandoned (default 10).
    pub max_conflicts: u32,
    /// First retry delay for 5xx/timeouts/resets, doubled up to `backoffMax` (50 ms).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest retry delay (default 5 s).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Timeout of one API request (default 5 s).
    #[serde(with = "humantime_serde")]
    pub api_timeout: Duration,
    /// Pause after a 403 before trying again (default 30 s).
    #[serde(with = "humantime_serde")]
    pub forbidden_pause: Duration,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            thresholds: Thresholds::default(),
            min_requests: DEFAULT_MIN_REQUESTS,
            consecutive_breaches: DEFAULT_CONSECUTIVE_BREACHES,
            interval: DEFAULT_INTERVAL,
            min_gap: DEFAULT_MIN_GAP,
            refresh: DEFAULT_REFRESH,
            step_duration: DEFAULT_STEP_DURATION,
            max_conflicts: DEFAULT_MAX_CONFLICTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            api_timeout: DEFAULT_API_TIMEOUT,
            forbidden_pause: DEFAULT_FORBIDDEN_PAUSE,
        }
    }
}

impl GuardrailsConfig {
    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<(), SidecarError> {
        self.thresholds.validate()?;
        let invalid = |field, message: &str| Err(SidecarError::invalid(field, message));
        if self.min_requests == 0 {
            return invalid("guardrails.minRequests", "must be >= 1");
        }
        if self.consecutive_breaches == 0 {
            return invalid("guardrails.consecutiveBreaches", "must be >= 1");
        }
        for (field, value) in [
            ("guardrails.interval", self.interval),
            ("guardrails.refresh", self.refresh),
            ("guardrails.stepDuration", self.step_duration),
            ("guardrails.backoffBase", self.backoff_base),
            ("guardrails.apiTimeout", self.api_timeout),
        ] {
            if value.is_zero() {
                return invalid(field, "must be > 0");
            }
        }
        if self.backoff_max < self.backoff_base {
            return invalid("guardrails.backoffMax", "must be >= backoffBase");
        }
        if self.max_conflicts == 0 {
            return invalid("guardrails.maxConflicts", "must be >= 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_section_parses_with_defaults_for_the_rest() {
        let c: GuardrailsConfig = serde_saphyr::from_str(
            "thresholds: { maxP99: 250ms, maxPsi: 0.1 }\nminRequests: 20\nrefresh: 2s\n",
        )
        .expect("valid");
        c.validate().expect("valid values");
        assert_eq!(c.thresholds.max_p99, Some(Duration::from_millis(250)));
        assert_eq!(c.thresholds.max_psi, Some(0.1));
        assert_eq!(
            c.thresholds.max_error_ratio,
            Some(super::super::thresholds::DEFAULT_MAX_ERROR_RATIO)
        );
        assert_eq!((c.min_requests, c.refresh), (20, Duration::from_secs(2)));
        assert_eq!(c.interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected_by_name() {
        assert!(serde_saphyr::from_str::<GuardrailsConfig>("minRequest: 5\n").is_err());
        let c: GuardrailsConfig =
            serde_saphyr::from_str("consecutiveBreaches: 0\n").expect("parses");
        let e = c.validate().expect_err("zero is invalid");
        assert!(
            e.to_string().contains("guardrails.consecutiveBreaches"),
            "{e}"
        );
        let c: GuardrailsConfig =
            serde_saphyr::from_str("backoffBase: 2s\nbackoffMax: 1s\n").expect("parses");
        assert!(c
            .validate()
            .expect_err("max below base")
            .to_string()
            .contains("guardrails.backoffMax"));
    }
}
