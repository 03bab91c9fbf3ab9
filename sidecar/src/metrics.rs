//! Prometheus metrics (`guardrail_*`). Every handle the data path touches is resolved
//! once at start (the revision is fixed per process), so recording is an atomic add or
//! a short histogram lock, never a label lookup.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::window::Snapshot;

/// Latency buckets: 0.5 ms × 1.25ⁿ up to ~70 s, fine enough (25% steps) to read a p99
/// of model-serving latencies from the histogram.
const LATENCY_START_SECONDS: f64 = 0.0005;
const LATENCY_FACTOR: f64 = 1.25;
const LATENCY_BUCKETS: u16 = 54;

/// Status classes, indexed by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why the upstream failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect (refused, unreachable, connect timeout): answered 503.
    Connect,
    /// No response headers within `upstreamTimeout`: answered 504.
    Timeout,
    /// Connection reset or closed mid-exchange: answered 502 (or body cut short).
    Reset,
    /// Malformed upstream response: answered 502.
    Protocol,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 4] = [Self::Connect, Self::Timeout, Self::Reset, Self::Protocol];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    quantile: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// All sidecar metrics, with `revision` as a constant label.
pub struct Metrics {
    registry: Registry,
    requests_by_class: [Counter; 5],
    errors: Counter,
    duration: Histogram,
    in_flight: Gauge,
    probes: Counter,
    upstream_errors: [Counter; 4],
    upstream_connections: Counter,
    sanity_failures: Family<CheckLabel, Counter>,
    sanity_checked: Counter,
    sanity_unchecked: Counter,
    truncated: Counter,
    request_bytes: Counter,
    response_bytes: Counter,
    window_requests: FloatGauge,
    window_error_ratio: FloatGauge,
    window_latency: [FloatGauge; 3],
    window_sanity_failure_ratio: FloatGauge,
    window_psi: FloatGauge,
}

impl Metrics {
    pub fn new(revision: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "guardrail",
            [("revision".into(), revision.to_string().into())].into_iter(),
        );
        let requests = Family::<ClassLabel, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests by HTTP status class",
            requests.clone(),
        );
        let requests_by_class =
            CLASSES.map(|class| requests.get_or_create_owned(&ClassLabel { class }));
        let errors = Counter::default();
        registry.register(
            "request_errors",
            "Requests that failed: 5xx, non-zero grpc-status or upstream failure",
            errors.clone(),
        );
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            LATENCY_START_SECONDS,
            LATENCY_FACTOR,
            LATENCY_BUCKETS,
        ));
        registry.register_with_unit(
            "request_duration",
            "Time from request arrival to the last response byte",
            Unit::Seconds,
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being proxied now",
            in_flight.clone(),
        );
        let probes = Counter::default();
        registry.register(
            "probe_requests",
            "Health probes proxied (queue-proxy, kubelet): never in the window or the request metrics",
            probes.clone(),
        );
        let upstream = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind",
            upstream.clone(),
        );
        let upstream_errors = UpstreamErrorKind::ALL
            .map(|k| upstream.get_or_create_owned(&KindLabel { kind: k.as_str() }));
        let upstream_connections = Counter::default();
        registry.register(
            "upstream_connections",
            "HTTP/1 connections opened to the model server (each carries many requests: \
             kept alive and reused)",
            upstream_connections.clone(),
        );
        let sanity_failures = Family::<CheckLabel, Counter>::default();
        registry.register(
            "sanity_failures",
            "Responses failing an output sanity check, by check",
            sanity_failures.clone(),
        );
        let sanity_checked = Counter::default();
        registry.register(
            "sanity_checked",
            "Responses whose output was checked",
            sanity_checked.clone(),
        );
        let sanity_unchecked = Counter::default();
        registry.register(
            "sanity_unchecked",
            "Responses that could not be checked (larger than the tee, or cut short)",
            sanity_unchecked.clone(),
        );
        let truncated = Counter::default();
        registry.register(
            "generations_truncated",
            "Generations ended by the length limit (finish_reason: length)",
            truncated.clone(),
        );
        let request_bytes = Counter::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes",
            Unit::Bytes,
            request_bytes.clone(),
        );
        let response_bytes = Counter::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes",
            Unit::Bytes,
            response_bytes.clone(),
        );

        let window_requests = FloatGauge::default();
        registry.register(
            "window_requests",
            "Requests in the sliding window",
            window_requests.clone(),
        );
        let window_error_ratio = FloatGauge::default();
        registry.register(
            "window_error_ratio",
            "Error ratio over the sliding window",
            window_error_ratio.clone(),
        );
        let latency = Family::<QuantileLabel, FloatGauge>::default();
        registry.register_with_unit(
            "window_latency",
            "Latency quantiles over the sliding window (HDR, ≤1% error)",
            Unit::Seconds,
            latency.clone(),
        );
        let window_latency = ["0.5", "0.95", "0.99"]
            .map(|quantile| latency.get_or_create_owned(&QuantileLabel { quantile }));
        let window_sanity_failure_ratio = FloatGauge::default();
        registry.register(
            "window_sanity_failure_ratio",
            "Sanity failure ratio over the sliding window",
            window_sanity_failure_ratio.clone(),
        );
        let window_psi = FloatGauge::default();
        registry.register(
            "window_score_psi",
            "Score drift (PSI) of the window against the reference; NaN without scores",
            window_psi.clone(),
        );
        Self {
            registry,
            requests_by_class,
            errors,
            duration,
            in_flight,
            probes,
            upstream_errors,
            upstream_connections,
            sanity_failures,
            sanity_checked,
            sanity_unchecked,
            truncated,
            request_bytes,
            response_bytes,
            window_requests,
            window_error_ratio,
            window_latency,
            window_sanity_failure_ratio,
            window_psi,
        }
    }

    /// The registry, for components that register their own metrics (guardrails).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.inc();
    }

    /// Counts a finished request; `status` is what the client got.
    pub(crate) fn request_finished(
        &self,
        status: u16,
        error: bool,
        seconds: f64,
        response_bytes: u64,
    ) {
        self.in_flight.dec();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests_by_class[class].inc();
        if error {
            self.errors.inc();
        }
        self.duration.observe(seconds);
        self.response_bytes.inc_by(response_bytes);
    }

    /// A proxied health probe ended.
    pub(crate) fn probe_finished(&self) {
        self.in_flight.dec();
        self.probes.inc();
    }

    pub(crate) fn request_bytes(&self, n: u64) {
        self.request_bytes.inc_by(n);
    }

    pub(crate) fn upstream_error(&self, kind: UpstreamErrorKind) {
        let index = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.upstream_errors[index].inc();
    }

    pub(crate) fn upstream_connection_opened(&self) {
        self.upstream_connections.inc();
    }

    pub(crate) fn sanity_checked(&self, failed_checks: &[&str], truncated: bool) {
        self.sanity_checked.inc();
        for check in failed_checks {
            self.sanity_failures
                .get_or_create(&CheckLabel {
                    check: (*check).to_string(),
                })
                .inc();
        }
        if truncated {
            self.truncated.inc();
        }
    }

    /// Creates the `check` series a response can fail at 0, so boards and alerts see
    /// them before the first failure.
    pub fn initialise_checks<'a>(&self, checks: impl IntoIterator<Item = &'a str>) {
        for check in checks {
            let _ = self.sanity_failures.get_or_create(&CheckLabel {
                check: check.to_string(),
            });
        }
    }

    pub(crate) fn sanity_unchecked(&self) {
        self.sanity_unchecked.inc();
    }

    /// Renders the text exposition, refreshing the window gauges from `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
        self.window_requests.set(snapshot.requests as f64);
        self.window_error_ratio.set(snapshot.error_ratio);
        for (gauge, value) in self.window_latency.iter().zip([
            snapshot.latency_p50_seconds,
            snapshot.latency_p95_seconds,
            snapshot.latency_p99_seconds,
        ]) {
            gauge.set(value);
        }
        self.window_sanity_failure_ratio
            .set(snapshot.sanity_failure_ratio);
        self.window_psi.set(snapshot.psi.unwrap_or(f64::NAN));
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
