//! Prometheus metrics of the webhook. Labels are low-cardinality: kinds are the fixed set
//! Guardrail knows (plus `other`), never object names.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: String,
    pub operation: String,
    /// `allow`, `warn` (allowed with warnings), `deny`, `skip` (not checked).
    pub decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub policy: &'static str,
    /// `enforce` or `audit`.
    pub mode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// All webhook metrics, cheap to clone (families share their storage).
#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub decision_seconds: Histogram,
    pub violations: Family<ViolationLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_last_reload_ok: Gauge,
    pub injections: Family<ResultLabels, Counter>,
    pub mutation_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        // 100µs .. ~1.6s: engine decisions are sub-millisecond, signature lookups are not.
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.5, 12);
        Self {
            requests: Family::default(),
            decision_seconds: Histogram::new(buckets),
            violations: Family::default(),
            rejected: Family::default(),
            config_reloads: Family::default(),
            config_last_reload_ok: Gauge::default(),
            injections: Family::default(),
            mutation_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.5, 10),
            ),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them under the `guardrail` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("guardrail");
        r.register(
            "admission_requests",
            "AdmissionReviews answered, by kind, operation and decision",
            m.requests.clone(),
        );
        r.register(
            "admission_decision_seconds",
            "Time to decide one AdmissionReview (parse, evaluate, answer)",
            m.decision_seconds.clone(),
        );
        r.register(
            "policy_violations",
            "Policy violations found, by policy and whether they were enforced",
            m.violations.clone(),
        );
        r.register(
            "admission_rejected_requests",
            "Requests refused before evaluation (bad_json, not_admission_review, too_large, timeout)",
            m.rejected.clone(),
        );
        r.register(
            "config_reloads",
            "Config file reloads, by result (success, failure)",
            m.config_reloads.clone(),
        );
        r.register(
            "config_last_reload_success",
            "1 when the last config (re)load succeeded, 0 when the last good config is kept",
            m.config_last_reload_ok.clone(),
        );
        r.register(
            "injections",
            "Pods seen by /mutate, by result (injected, updated, unchanged, not_selected, \
             exempt, host_network, conflict, not_configured, skip)",
            m.injections.clone(),
        );
        r.register(
            "mutation_decision_seconds",
            "Time to answer one /mutate AdmissionReview",
            m.mutation_seconds.clone(),
        );
        m.config_last_reload_ok.set(1);
        m.initialise_known_labels();
        m
    }

    /// Every label value known in advance exists from start-up at 0, so dashboards and
    /// alerts see series before the first event (Prometheus practice).
    fn initialise_known_labels(&self) {
        use crate::{inject::Outcome, policy::PolicyName, workload::WorkloadKind};
        let kinds = WorkloadKind::ALL.map(WorkloadKind::metric_label);
        for kind in kinds.iter().copied().chain(["other"]) {
            for operation in ["create", "update"] {
                for decision in ["allow", "warn", "deny", "skip"] {
                    let labels = RequestLabels {
                        kind: kind.to_string(),
                        operation: operation.to_string(),
                        decision,
                    };
                    let _ = self.requests.get_or_create(&labels);
                }
            }
        }
        for operation in ["delete", "connect"] {
            let labels = RequestLabels {
                kind: "other".into(),
                operation: operation.into(),
                decision: "skip",
            };
            let _ = self.requests.get_or_create(&labels);
        }
        for policy in PolicyName::ALL.map(PolicyName::as_str) {
            for mode in ["enforce", "audit"] {
                let _ = self
                    .violations
                    .get_or_create(&ViolationLabels { policy, mode });
            }
        }
        for reason in ["bad_json", "not_admission_review", "too_large", "timeout"] {
            let _ = self.rejected.get_or_create(&ReasonLabels { reason });
        }
        for result in ["success", "failure"] {
            let _ = self.config_reloads.get_or_create(&ResultLabels { result });
        }
        for result in Outcome::ALL
            .map(Outcome::as_str)
            .into_iter()
            .chain(["skip"])
        {
            let _ = self.injections.get_or_create(&ResultLabels { result });
        }
    }

    pub fn injection(&self, result: &'static str) {
        self.injections
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }
}
