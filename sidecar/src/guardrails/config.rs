//! The `guardrails:` section of the sidecar config: default thresholds (overridable per
//! Knative Service by annotations), judgement rules and how the Kubernetes API is used.

use std::time::Duration;

use serde::Deserialize;

use super::thresholds::{Overrides, Thresholds};
use crate::error::SidecarError;

/// Default floor of requests before any verdict: small, since the sequential tests are
/// what make a verdict safe (a total failure breaches after about 3 requests anyway).
pub const DEFAULT_MIN_REQUESTS: u64 = 5;
/// Default probability, per canary step, of rolling back a canary that is within
/// every limit.
pub const DEFAULT_FALSE_ROLLBACK_RATE: f64 = 0.01;
/// Default probability of calling a broken guardrail healthy (what promotion needs).
pub const DEFAULT_FALSE_PROMOTION_RATE: f64 = 0.05;
/// Default spacing of the checkpoints recent-traffic tests start from.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Default age of the oldest checkpoint kept (older starts repeat the cumulative test).
pub const DEFAULT_RECENT_HORIZON: Duration = Duration::from_secs(60);
/// Default period of reading the peers' summaries.
pub const DEFAULT_PEER_INTERVAL: Duration = Duration::from_secs(1);
/// Default time allowed for one peer's summary.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(500);
/// Default judge Lease duration (renewed every third of it).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default number of pods assumed to judge alone when the Lease cannot be used.
pub const DEFAULT_SOLO_JUDGES: u32 = 10;
/// Default time a step may stay undecided before the deadline action.
pub const DEFAULT_DECISION_DEADLINE: Duration = Duration::from_secs(3600);
/// Default admin port of peers whose pod spec names none (`guardrail-admin`).
pub const DEFAULT_PEER_ADMIN_PORT: u16 = 9095;
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
    /// Requests below which no verdict is given (default 5): a floor, not what makes
    /// a verdict safe.
    pub min_requests: u64,
    /// Probability of a false rollback per canary step (default 0.01), split over the
    /// enabled guardrails and their tests.
    pub false_rollback_rate: f64,
    /// Probability of calling a broken guardrail healthy (default 0.05).
    pub false_promotion_rate: f64,
    /// Spacing of the checkpoints the recent-traffic tests start from (default 1 s).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Oldest checkpoint kept (default 60 s).
    #[serde(with = "humantime_serde")]
    pub recent_horizon: Duration,
    /// Period of reading the other pods' summaries (default 1 s).
    #[serde(with = "humantime_serde")]
    pub peer_interval: Duration,
    /// Time allowed for one pod's summary (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// Admin port of pods whose spec has no port named `guardrail-admin` (9095).
    pub peer_admin_port: u16,
    /// Judge Lease duration (default 15 s).
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// Pods assumed to judge alone when the Lease cannot be used (default 10): each
    /// spends 1/soloJudges of the error budgets.
    pub solo_judges: u32,
    /// How long a step may stay undecided before `deadlineAction` (default 1 h).
    #[serde(with = "humantime_serde")]
    pub decision_deadline: Duration,
    /// What an undecided step does at its deadline: hold (default), rollback or promote.
    pub deadline_action: DeadlineAction,
    /// Latencies of requests completing within this time of start are left out of
    /// the latency guardrails (default 0; `--warmup-seconds` / `GUARDRAIL_WARMUP_SECONDS`,
    /// set from the pod's `guardrail.dev/warmup-seconds` annotation by the downward API).
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
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
    /// What Service annotations may change (default: everything, floors bounded by
    /// 1000); see SECURITY.md for a locked-down setting.
    pub overrides: Overrides,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            thresholds: Thresholds::default(),
            min_requests: DEFAULT_MIN_REQUESTS,
            false_rollback_rate: DEFAULT_FALSE_ROLLBACK_RATE,
            false_promotion_rate: DEFAULT_FALSE_PROMOTION_RATE,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            recent_horizon: DEFAULT_RECENT_HORIZON,
            peer_interval: DEFAULT_PEER_INTERVAL,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            peer_admin_port: DEFAULT_PEER_ADMIN_PORT,
            lease_duration: DEFAULT_LEASE_DURATION,
            solo_judges: DEFAULT_SOLO_JUDGES,
            decision_deadline: DEFAULT_DECISION_DEADLINE,
            deadline_action: DeadlineAction::Hold,
            warmup: Duration::ZERO,
            interval: DEFAULT_INTERVAL,
            min_gap: DEFAULT_MIN_GAP,
            refresh: DEFAULT_REFRESH,
            step_duration: DEFAULT_STEP_DURATION,
            max_conflicts: DEFAULT_MAX_CONFLICTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            api_timeout: DEFAULT_API_TIMEOUT,
            forbidden_pause: DEFAULT_FORBIDDEN_PAUSE,
            overrides: Overrides::default(),
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
        for (field, rate) in [
            ("guardrails.falseRollbackRate", self.false_rollback_rate),
            ("guardrails.falsePromotionRate", self.false_promotion_rate),
        ] {
            if !(rate > 0.0 && rate < 0.5) {
                return invalid(field, "must be a probability in (0, 0.5), e.g. 0.01");
            }
        }
        if self.solo_judges == 0 {
            return invalid("guardrails.soloJudges", "must be >= 1");
        }
        for (field, value) in [
            ("guardrails.interval", self.interval),
            ("guardrails.refresh", self.refresh),
            ("guardrails.stepDuration", self.step_duration),
            ("guardrails.backoffBase", self.backoff_base),
            ("guardrails.apiTimeout", self.api_timeout),
            ("guardrails.checkpointInterval", self.checkpoint_interval),
            ("guardrails.peerInterval", self.peer_interval),
            ("guardrails.peerTimeout", self.peer_timeout),
            ("guardrails.leaseDuration", self.lease_duration),
            ("guardrails.decisionDeadline", self.decision_deadline),
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
        if self.overrides.max_min_requests < self.min_requests {
            return invalid(
                "guardrails.overrides.maxMinRequests",
                "must be >= guardrails.minRequests",
            );
        }
        Ok(())
    }
}

/// The warm-up from `--warmup-seconds` / `GUARDRAIL_WARMUP_SECONDS`: whole seconds, or
/// empty for "not set" (the downward API yields an empty value when the pod has no
/// `guardrail.dev/warmup-seconds` annotation, which must not stop the sidecar).
pub fn parse_warmup_seconds(value: &str) -> Result<Option<Duration>, SidecarError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<u64>()
        .map(|s| Some(Duration::from_secs(s)))
        .map_err(|_| {
            SidecarError::invalid(
                "--warmup-seconds",
                format!("{value:?} is not a whole number of seconds, e.g. \"30\""),
            )
        })
}

/// What an undecided step does at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadlineAction {
    /// Keep the traffic as it is and say why in an Event (default).
    Hold,
    /// Roll the canary back: "not proven healthy in time" counts as a failure.
    Rollback,
    /// Promote without evidence: only on explicit opt-in, with a Warning Event.
    Promote,
}

impl DeadlineAction {
    pub fn parse(v: &str) -> Result<Self, String> {
        match v.trim() {
            "hold" => Ok(Self::Hold),
            "rollback" => Ok(Self::Rollback),
            "promote" => Ok(Self::Promote),
            _ => Err("expected hold, rollback or promote".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Rollback => "rollback",
            Self::Promote => "promote",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_seconds_accept_empty_as_unset_and_name_the_flag_otherwise() {
        assert_eq!(parse_warmup_seconds("").expect("empty"), None);
        assert_eq!(parse_warmup_seconds(" ").expect("blank"), None);
        assert_eq!(
            parse_warmup_seconds("30").expect("number"),
            Some(Duration::from_secs(30))
        );
        let e = parse_warmup_seconds("30s").expect_err("unit");
        assert!(e.to_string().contains("--warmup-seconds"), "{e}");
    }

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
            serde_saphyr::from_str("falseRollbackRate: 0.7\n").expect("parses");
        let e = c.validate().expect_err("too large");
        assert!(
            e.to_string().contains("guardrails.falseRollbackRate"),
            "{e}"
        );
        assert!(serde_saphyr::from_str::<GuardrailsConfig>("consecutiveBreaches: 2\n").is_err());
        let c: GuardrailsConfig =
            serde_saphyr::from_str("deadlineAction: promote\n").expect("parses");
        assert_eq!(c.deadline_action, DeadlineAction::Promote);
        let c: GuardrailsConfig =
            serde_saphyr::from_str("backoffBase: 2s\nbackoffMax: 1s\n").expect("parses");
        assert!(c
            .validate()
            .expect_err("max below base")
            .to_string()
            .contains("guardrails.backoffMax"));
    }
}
