//! Continuous judgement of the window: below the minimum count nothing is decided;
//! otherwise every guardrail is checked, and a breach counts only once it has held for
//! `consecutive_breaches` evaluations at least `interval` apart.

use std::{fmt, time::Duration};

use tokio::time::Instant;

use super::thresholds::Rules;
use crate::window::Snapshot;

/// One guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guardrail {
    ErrorRatio,
    P99,
    SanityFailureRatio,
    Psi,
}

impl Guardrail {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRatio => "error_ratio",
            Self::P99 => "p99",
            Self::SanityFailureRatio => "sanity_failure_ratio",
            Self::Psi => "psi",
        }
    }
}

/// A guardrail broken, with the numbers that broke it.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub guardrail: Guardrail,
    pub observed: f64,
    pub limit: f64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.guardrail {
            Guardrail::P99 => write!(
                f,
                "p99 {:.1}ms > {:.1}ms",
                self.observed * 1e3,
                self.limit * 1e3
            ),
            g => write!(f, "{} {:.4} > {:.4}", g.as_str(), self.observed, self.limit),
        }
    }
}

/// What one evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few requests in the window: neither rollback nor promotion.
    Undecided { requests: u64, min_requests: u64 },
    /// Every guardrail holds with enough requests.
    Healthy { requests: u64 },
    /// Guardrails broken but not yet for `consecutive_breaches` evaluations.
    Suspect {
        streak: u32,
        violations: Vec<Violation>,
    },
    /// Guardrails broken for long enough: act.
    Breach {
        requests: u64,
        violations: Vec<Violation>,
    },
}

impl Verdict {
    /// One line with the numbers, for annotations, Events and logs.
    pub fn describe(violations: &[Violation], requests: u64, window_seconds: f64) -> String {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        format!(
            "{} over {requests} requests in the last {window_seconds:.1}s",
            list.join(", ")
        )
    }
}

/// The guardrails broken by `snapshot`, ignoring counts.
pub fn violations(snapshot: &Snapshot, rules: &Rules) -> Vec<Violation> {
    let t = &rules.thresholds;
    let mut out = Vec::new();
    let mut check = |guardrail, observed: f64, limit: Option<f64>| {
        if let Some(limit) = limit {
            // NaN never passes as "within limits".
            if observed > limit || observed.is_nan() {
                out.push(Violation {
                    guardrail,
                    observed,
                    limit,
                });
            }
        }
    };
    check(
        Guardrail::ErrorRatio,
        snapshot.error_ratio,
        t.max_error_ratio,
    );
    check(
        Guardrail::P99,
        snapshot.latency_p99_seconds,
        t.max_p99.map(|d| d.as_secs_f64()),
    );
    if snapshot.sanity_checked >= rules.min_requests {
        check(
            Guardrail::SanityFailureRatio,
            snapshot.sanity_failure_ratio,
            t.max_sanity_failure_ratio,
        );
    }
    if snapshot.scores >= rules.min_requests {
        if let Some(psi) = snapshot.psi {
            check(Guardrail::Psi, psi, t.max_psi);
        }
    }
    out
}

/// Breach streak state of one revision.
#[derive(Debug)]
pub struct Evaluator {
    interval: Duration,
    streak: u32,
    last_counted: Option<Instant>,
}

impl Evaluator {
    /// `interval` is the least time between two breaching evaluations that count as
    /// consecutive (so `consecutiveBreaches: 3` means "broken for about 2 intervals").
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            streak: 0,
            last_counted: None,
        }
    }

    /// Judges `snapshot` at the current (tokio) time.
    pub fn judge(&mut self, snapshot: &Snapshot, rules: &Rules) -> Verdict {
        if snapshot.requests < rules.min_requests {
            self.reset();
            return Verdict::Undecided {
                requests: snapshot.requests,
                min_requests: rules.min_requests,
            };
        }
        let violations = violations(snapshot, rules);
        if violations.is_empty() {
            self.reset();
            return Verdict::Healthy {
                requests: snapshot.requests,
            };
        }
        let now = Instant::now();
        if self
            .last_counted
            .is_none_or(|at| now.duration_since(at) >= self.interval)
        {
            self.streak += 1;
            self.last_counted = Some(now);
        }
        if self.streak >= rules.consecutive_breaches {
            Verdict::Breach {
                requests: snapshot.requests,
                violations,
            }
        } else {
            Verdict::Suspect {
                streak: self.streak,
                violations,
            }
        }
    }

    fn reset(&mut self) {
        self.streak = 0;
        self.last_counted = None;
    }
}

#[cfg(test)]
mod tests;
