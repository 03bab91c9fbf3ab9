//! The limits of one listener, with documented defaults.

use std::time::Duration;

use serde::Deserialize;

/// Default time for a request head, from its first byte (and for a new connection's
/// first request, from the accept).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection stays open: longer than the 90 s idle
/// pool of Go's HTTP transport (queue-proxy, the API server), so the client, not we,
/// closes idle connections and no request races a close.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default bound on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default bound on a request head (request line and headers), like Envoy's 60 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default bound on requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Limits of one listener. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Limits {
    /// Time for a request head from its first byte, and for a new connection's first
    /// head from the accept (default 10 s); slower peers are disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection stays open (default 120 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections; more are answered 503 and closed (default 4096).
    pub max_connections: usize,
    /// Requests in flight; more are answered 503 with `Retry-After` (default 1024).
    pub max_in_flight: usize,
    /// Size of a request head; larger heads get 431 (default 64 KiB, at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl Limits {
    /// The first field that cannot work, as `(field, why)`.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.header_read_timeout.is_zero() {
            return Some(("headerReadTimeout", "must be more than 0"));
        }
        if self.idle_timeout.is_zero() {
            return Some(("idleTimeout", "must be more than 0"));
        }
        if self.max_connections == 0 {
            return Some(("maxConnections", "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Some(("maxInFlight", "must be at least 1"));
        }
        // hyper's smallest read buffer.
        if self.max_header_bytes < 8192 {
            return Some(("maxHeaderBytes", "must be at least 8192"));
        }
        None
    }
}
