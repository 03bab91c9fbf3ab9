//! Guardrail metrics (`guardrail_*`, low-cardinality labels), registered into the
//! sidecar's registry.

use std::sync::atomic::AtomicU64;

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
struct ReasonLabel {
    reason: &'static str,
}

/// Handles for the guardrail loop; cheap to clone.
#[derive(Clone, Debug)]
pub struct GuardrailMetrics {
    evaluations: Family<VerdictLabel, Counter>,
    breached: Family<GuardrailLabel, Gauge>,
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
        registry.register(
            "evaluations",
            "Guardrail evaluations by verdict (undecided, healthy, suspect, breach)",
            m.evaluations.clone(),
        );
        registry.register(
            "breached",
            "1 while a guardrail is broken in the window (with enough requests)",
            m.breached.clone(),
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

    pub fn breached(&self, guardrail: &'static str, on: bool) {
        self.breached
            .get_or_create(&GuardrailLabel { guardrail })
            .set(i64::from(on));
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
