//! Signature verification metrics, registered under `guardrail_signature_*`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

type Labels = [(&'static str, &'static str); 1];

fn latency_histogram() -> Histogram {
    // 10 µs (cache hit) .. ~10 s (budget), x3 per bucket.
    Histogram::new(exponential_buckets(0.000_01, 3.0, 15))
}

#[derive(Clone)]
pub struct SignatureMetrics {
    /// `result` = hit | miss (a miss is a registry round-trip shared by concurrent callers).
    cache_lookups: Family<Labels, Counter>,
    /// `source` = cache | registry.
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// `kind`: one of [`REGISTRY_ERROR_KINDS`].
    registry_errors: Family<Labels, Counter>,
    /// `verdict` = allowed | denied | warned.
    decisions: Family<Labels, Counter>,
    /// Images allowed only because a rule says `onError: allow`.
    on_error_allowed: Counter,
}

/// Every `kind` of `guardrail_signature_registry_errors` (registry.rs `classify`,
/// cosign.rs, the budget and limits).
pub const REGISTRY_ERROR_KINDS: [&str; 9] = [
    "timeout",
    "connect",
    "transport",
    "auth",
    "server",
    "protocol",
    "client",
    "budget",
    "limit",
];

impl SignatureMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            cache_lookups: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            registry_errors: Family::default(),
            decisions: Family::default(),
            on_error_allowed: Counter::default(),
        };
        // Known label values exist from start-up, so boards and alerts see 0, not nothing.
        for result in ["hit", "miss"] {
            let _ = m.cache_lookups.get_or_create(&[("result", result)]);
        }
        for kind in REGISTRY_ERROR_KINDS {
            let _ = m.registry_errors.get_or_create(&[("kind", kind)]);
        }
        for verdict in ["allowed", "denied", "warned"] {
            let _ = m.decisions.get_or_create(&[("verdict", verdict)]);
        }
        registry.register(
            "guardrail_signature_cache_lookups",
            "Signature cache lookups by result (hit, miss)",
            m.cache_lookups.clone(),
        );
        registry.register_with_unit(
            "guardrail_signature_verification",
            "Time to decide one image's signatures, by source (cache, registry)",
            Unit::Seconds,
            m.latency.clone(),
        );
        registry.register(
            "guardrail_signature_registry_errors",
            "Registry failures while fetching signatures, by kind",
            m.registry_errors.clone(),
        );
        registry.register(
            "guardrail_signature_decisions",
            "Signature verdicts by result (allowed, denied, warned)",
            m.decisions.clone(),
        );
        registry.register(
            "guardrail_signature_on_error_allowed",
            "Images allowed without verification because of onError: allow",
            m.on_error_allowed.clone(),
        );
        m
    }

    pub fn cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_lookups
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub fn latency(&self, from_cache: bool, seconds: f64) {
        let source = if from_cache { "cache" } else { "registry" };
        self.latency
            .get_or_create(&[("source", source)])
            .observe(seconds);
    }

    pub fn registry_error(&self, kind: &'static str) {
        self.registry_errors.get_or_create(&[("kind", kind)]).inc();
    }

    pub fn decision(&self, verdict: &'static str) {
        self.decisions.get_or_create(&[("verdict", verdict)]).inc();
    }

    pub fn on_error_allowed(&self) {
        self.on_error_allowed.inc();
    }
}
