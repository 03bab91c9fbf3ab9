//! Guardrail metrics (`guardrail_*`, low-cardinality labels), registered into the
//! sidecar's registry.

use std::sync::atomic::AtomicU64;

use crate::judgement::verdict::{Guardrail, State};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardrailLabel {
    guardrail: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    guardrail: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StandingLabel {
    standing: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Overall verdicts of a judgement, and why a pod did not judge.
const VERDICTS: [&str; 5] = ["breach", "healthy", "undecided", "follower", "not_canary"];
const STANDINGS: [&str; 5] = ["judge", "follower", "solo", "unknown", "none"];

/// A guardrail's states, plus `off` for a disabled one.
fn states() -> impl Iterator<Item = &'static str> {
    State::ALL.into_iter().map(State::as_str).chain(["off"])
}

/// Handles for the guardrail loop; cheap to clone.
#[derive(Clone, Debug)]
pub struct GuardrailMetrics {
    evaluations: Family<VerdictLabel, Counter>,
    breached: Family<GuardrailLabel, Gauge>,
    verdict: Family<StateLabel, Gauge>,
    standing: Family<StandingLabel, Gauge>,
    peer_errors: Family<ReasonLabel, Counter>,
    deadlines: Family<ActionLabel, Counter>,
    actions: Family<ActionLabel, Counter>,
    api_errors: Family<ReasonLabel, Counter>,
    annotation_errors: Counter,
    rollback_seconds: Histogram,
    traffic_percent: Gauge<f64, AtomicU64>,
}

impl GuardrailMetrics {
    /// Creates the metrics and registers them into `registry` (prefixed `guardrail_`
    /// by the sidecar's registry).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            evaluations: Family::default(),
            breached: Family::default(),
            verdict: Family::default(),
            standing: Family::default(),
            peer_errors: Family::default(),
            deadlines: Family::default(),
            actions: Family::default(),
            api_errors: Family::default(),
            annotation_errors: Counter::default(),
            // 5 ms .. 41 s.
            rollback_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
            ),
            traffic_percent: Gauge::default(),
        };
        m.traffic_percent.set(f64::NAN);
        // Known label values exist from start-up, so boards and alerts see 0, not nothing.
        for verdict in VERDICTS {
            let _ = m.evaluations.get_or_create(&VerdictLabel { verdict });
        }
        for guardrail in Guardrail::ALL.map(Guardrail::as_str) {
            let _ = m.breached.get_or_create(&GuardrailLabel { guardrail });
            for state in states() {
                let _ = m.verdict.get_or_create(&StateLabel { guardrail, state });
            }
        }
        for standing in STANDINGS {
            let _ = m.standing.get_or_create(&StandingLabel { standing });
        }
        for reason in ["unreachable", "invalid", "wrong_revision"] {
            let _ = m.peer_errors.get_or_create(&ReasonLabel { reason });
        }
        for reason in [
            "forbidden",
            "conflict",
            "not_found",
            "rejected",
            "transient",
            "config",
        ] {
            let _ = m.api_errors.get_or_create(&ReasonLabel { reason });
        }
        for action in ["rollback", "promotion"] {
            for outcome in ["written", "dry_run", "nothing", "stopped"] {
                let _ = m.actions.get_or_create(&ActionLabel { action, outcome });
            }
        }
        for action in ["hold", "rollback", "promote"] {
            let _ = m.deadlines.get_or_create(&ActionLabel {
                action,
                outcome: "reached",
            });
        }
        registry.register(
            "evaluations",
            "Guardrail evaluations by verdict (breach, healthy, undecided; follower, not_canary when this pod does not judge)",
            m.evaluations.clone(),
        );
        registry.register(
            "breached",
            "1 while a guardrail's test says breach",
            m.breached.clone(),
        );
        registry.register(
            "verdict",
            "1 for each guardrail's current state (breach, healthy, undecided, skipped, off) as judged by this pod",
            m.verdict.clone(),
        );
        registry.register(
            "judge_standing",
            "1 for this pod's standing in its revision's judgement (judge, follower, solo, unknown, none)",
            m.standing.clone(),
        );
        registry.register(
            "peer_errors",
            "Peer summaries that could not be read, by reason",
            m.peer_errors.clone(),
        );
        registry.register(
            "deadline_actions",
            "Undecided steps that reached their decision deadline, by action",
            m.deadlines.clone(),
        );
        registry.register(
            "actions",
            "Rollback, promotion and step writes by outcome",
            m.actions.clone(),
        );
        registry.register(
            "kube_api_errors",
            "Kubernetes API errors by reason (forbidden, conflict, not_found, rejected, transient)",
            m.api_errors.clone(),
        );
        registry.register(
            "annotation_errors",
            "Guardrail annotations ignored because they do not parse",
            m.annotation_errors.clone(),
        );
        registry.register_with_unit(
            "rollback_latency",
            "From the breaching evaluation to the accepted rollback write",
            Unit::Seconds,
            m.rollback_seconds.clone(),
        );
        registry.register(
            "traffic_percent",
            "This revision's share of its Service's traffic as last read; NaN before the first read",
            m.traffic_percent.clone(),
        );
        m
    }

    pub fn evaluation(&self, verdict: &'static str) {
        self.evaluations
            .get_or_create(&VerdictLabel { verdict })
            .inc();
    }

    /// Sets `guardrail`'s current state (and `breached`).
    pub fn verdict(&self, guardrail: &'static str, state: &'static str) {
        for s in states() {
            self.verdict
                .get_or_create(&StateLabel {
                    guardrail,
                    state: s,
                })
                .set(i64::from(s == state));
        }
        self.breached
            .get_or_create(&GuardrailLabel { guardrail })
            .set(i64::from(state == "breach"));
    }

    pub fn standing(&self, standing: &'static str) {
        for s in STANDINGS {
            self.standing
                .get_or_create(&StandingLabel { standing: s })
                .set(i64::from(s == standing));
        }
    }

    pub fn peer_error(&self, reason: &'static str) {
        self.peer_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn deadline(&self, action: &'static str) {
        self.deadlines
            .get_or_create(&ActionLabel {
                action,
                outcome: "reached",
            })
            .inc();
    }

    pub fn action(&self, action: &'static str, outcome: &'static str) {
        self.actions
            .get_or_create(&ActionLabel { action, outcome })
            .inc();
    }

    pub fn api_error(&self, reason: &'static str) {
        self.api_errors.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn annotation_error(&self) {
        self.annotation_errors.inc();
    }

    pub fn rollback_latency(&self, seconds: f64) {
        self.rollback_seconds.observe(seconds);
    }

    pub fn traffic_percent(&self, percent: f64) {
        self.traffic_percent.set(percent);
    }
}
