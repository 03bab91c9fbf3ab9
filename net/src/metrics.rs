//! Listener metrics, `<prefix>_listener_*` by listener name (low cardinality: a
//! binary has two or three listeners).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabel {
    pub(crate) listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TimeoutLabel {
    pub(crate) listener: &'static str,
    pub(crate) phase: &'static str,
}

/// Phases a connection can time out in.
pub(crate) const PHASES: [&str; 3] = ["first_bytes", "header", "idle"];

/// Handles for every listener of a process; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ListenerMetrics {
    pub(crate) open: Family<ListenerLabel, Gauge>,
    pub(crate) shed: Family<ListenerLabel, Counter>,
    pub(crate) accept_errors: Family<ListenerLabel, Counter>,
    pub(crate) timeouts: Family<TimeoutLabel, Counter>,
    pub(crate) requests_shed: Family<ListenerLabel, Counter>,
}

impl ListenerMetrics {
    /// Registers into `registry` (which carries the binary's prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "listener_connections",
            "Open connections by listener",
            m.open.clone(),
        );
        registry.register(
            "listener_connections_shed",
            "Connections answered 503 and closed because the listener was at maxConnections",
            m.shed.clone(),
        );
        registry.register(
            "listener_accept_errors",
            "Failed accepts (e.g. EMFILE: out of file descriptors), each followed by a backoff",
            m.accept_errors.clone(),
        );
        registry.register(
            "listener_timeouts",
            "Connections closed by a timeout: first_bytes (nothing usable after accept), header (a slow request head), idle (keep-alive)",
            m.timeouts.clone(),
        );
        registry.register(
            "listener_requests_shed",
            "Requests answered 503 with Retry-After because maxInFlight were in flight",
            m.requests_shed.clone(),
        );
        m
    }

    /// Creates every series of `listener` at zero, so dashboards see them before the
    /// first event.
    pub fn init(&self, listener: &'static str) {
        let l = ListenerLabel { listener };
        let _ = self.open.get_or_create(&l);
        let _ = self.shed.get_or_create(&l);
        let _ = self.accept_errors.get_or_create(&l);
        let _ = self.requests_shed.get_or_create(&l);
        for phase in PHASES {
            let _ = self
                .timeouts
                .get_or_create(&TimeoutLabel { listener, phase });
        }
    }

    pub(crate) fn timeout(&self, listener: &'static str, phase: &'static str) {
        self.timeouts
            .get_or_create(&TimeoutLabel { listener, phase })
            .inc();
    }
}
