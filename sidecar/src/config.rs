//! Sidecar configuration: a YAML file (`--config`) whose every field has a documented
//! default, so an empty file (or none) is a working configuration.

mod sanity;

use std::{net::SocketAddr, path::Path, time::Duration};

use guardrail_net::Limits;
use serde::Deserialize;

pub use sanity::{Protocol, RuleConfig, RuleConstraint, SanityConfig, ScoreDriftConfig};

use crate::{error::SidecarError, guardrails::GuardrailsConfig};

/// Default proxy listener: 8090 avoids the ports Knative reserves (8012, 8013, 8022,
/// 9090, 9091) and the usual model-server port 8080.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8090";
/// Default upstream: the model server in the same pod.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8080";
/// Default admin listener (`/metrics`, `/healthz`, `/readyz`, `/guardrails`).
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9095";
/// Default time allowed for the upstream to answer with response headers.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time the upstream may go silent in the middle of a response body.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed to open a TCP connection to the upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on finishing in-flight requests after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default sliding-window length.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default number of rotating sub-windows (5 s each for the default 60 s window).
pub const DEFAULT_SUB_WINDOWS: usize = 12;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// Proxy listen address (default `0.0.0.0:8090`); `--listen` overrides it.
    pub listen: SocketAddr,
    /// Upstream base URL, `http://host:port` (default `http://127.0.0.1:8080`).
    pub upstream: String,
    /// Admin listen address (default `0.0.0.0:9095`); `--admin-listen` overrides it.
    pub admin_listen: SocketAddr,
    /// Time for the upstream to send response headers before a 504 (default 60 s).
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Time the upstream may send nothing in the middle of a response body (default
    /// 60 s): then the response is cut (the client sees a reset) and counted as an
    /// upstream timeout. Covers a model that never finishes its body.
    #[serde(with = "humantime_serde")]
    pub upstream_idle_timeout: Duration,
    /// Time to connect to the upstream before a 503 (default 2 s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on the drain of in-flight requests after SIGTERM (default 20 s).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Optional upstream path probed by `/readyz` (expects 2xx), e.g.
    /// `/v2/health/ready`; without it `/readyz` checks that the upstream accepts TCP.
    pub readiness_path: Option<String>,
    /// The model's own readiness probe, as a Kubernetes probe (httpGet, tcpSocket or
    /// grpc; numeric ports; host default 127.0.0.1). When set, it runs in the
    /// background and `/readyz` answers its last result at once (it replaces
    /// `readinessPath`). The injector sets it (`GUARDRAIL_UPSTREAM_PROBE`) from the
    /// probe queue-proxy ran on the model before the sidecar took its place.
    pub upstream_probe: Option<k8s_openapi::api::core::v1::Probe>,
    /// The sliding window judged by the guardrails.
    pub window: WindowConfig,
    /// Output sanity checks.
    pub sanity: SanityConfig,
    /// Rollback and staged promotion (see docs/guardrails.md).
    pub guardrails: GuardrailsConfig,
    /// One log line per request, target `access` (default false; `--access-log`).
    pub access_log: bool,
    /// Limits of the proxy listener: header and idle timeouts, connections, requests
    /// in flight, head size (see docs/sidecar.md). The admin listener has fixed,
    /// smaller limits ([`ADMIN_MAX_CONNECTIONS`], [`ADMIN_MAX_IN_FLIGHT`]).
    pub limits: Limits,
}

/// Connections the admin listener accepts (Prometheus, the judge, kubelet, people).
pub const ADMIN_MAX_CONNECTIONS: usize = 128;
/// Admin requests in flight.
pub const ADMIN_MAX_IN_FLIGHT: usize = 32;

/// The admin listener's limits: the proxy's timeouts, smaller bounds.
pub fn admin_limits(proxy: &Limits) -> Limits {
    Limits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        max_in_flight: ADMIN_MAX_IN_FLIGHT,
        ..proxy.clone()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            upstream: DEFAULT_UPSTREAM.to_string(),
            admin_listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("constant address parses"),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_idle_timeout: DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            readiness_path: None,
            upstream_probe: None,
            window: WindowConfig::default(),
            sanity: SanityConfig::default(),
            guardrails: GuardrailsConfig::default(),
            limits: Limits::default(),
            access_log: false,
        }
    }
}

/// Sliding-window shape: `length` split into `subWindows` rotating parts; figures
/// cover the last `length` to within one sub-window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct WindowConfig {
    /// Window length (default 60 s).
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    /// Number of sub-windows (default 12).
    pub sub_windows: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            length: DEFAULT_WINDOW,
            sub_windows: DEFAULT_SUB_WINDOWS,
        }
    }
}

impl Config {
    /// Reads and validates a YAML config file.
    pub fn from_file(path: &Path) -> Result<Self, SidecarError> {
        let text = std::fs::read_to_string(path).map_err(|source| SidecarError::ReadConfig {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            SidecarError::ParseConfig { message, .. } => SidecarError::ParseConfig {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text (an empty document is the default config).
    pub fn from_yaml(text: &str) -> Result<Self, SidecarError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| SidecarError::ParseConfig {
                path: "<inline>".into(),
                message: e.to_string(),
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-field constraints; errors name the offending field.
    pub fn validate(&self) -> Result<(), SidecarError> {
        self.upstream_authority()?;
        if self.upstream_timeout.is_zero() {
            return Err(SidecarError::invalid("upstreamTimeout", "must be > 0"));
        }
        if self.upstream_idle_timeout.is_zero() {
            return Err(SidecarError::invalid("upstreamIdleTimeout", "must be > 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(SidecarError::invalid("connectTimeout", "must be > 0"));
        }
        if let Some(p) = &self.readiness_path {
            if !p.starts_with('/') {
                return Err(SidecarError::invalid(
                    "readinessPath",
                    format!("`{p}` must start with `/`"),
                ));
            }
        }
        if let Some(probe) = &self.upstream_probe {
            crate::readiness::UpstreamProbe::from_probe(probe)?;
        }
        let w = &self.window;
        if w.sub_windows == 0 || w.sub_windows > 600 {
            return Err(SidecarError::invalid(
                "window.subWindows",
                format!("{} is out of range 1..=600", w.sub_windows),
            ));
        }
        if w.length < Duration::from_millis(100) * w.sub_windows as u32 {
            return Err(SidecarError::invalid(
                "window.length",
                "must give every sub-window at least 100ms (raise length or lower subWindows)",
            ));
        }
        if let Some((field, why)) = self.limits.invalid() {
            return Err(SidecarError::invalid(format!("limits.{field}"), why));
        }
        self.sanity.validate()?;
        self.guardrails.validate()
    }

    /// The upstream's `host:port`, from `upstream` (only cleartext `http://` is
    /// proxied: the model server is in the same pod).
    pub fn upstream_authority(&self) -> Result<http::uri::Authority, SidecarError> {
        let uri: http::Uri = self.upstream.parse().map_err(|e| {
            SidecarError::invalid("upstream", format!("`{}` is not a URL: {e}", self.upstream))
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(SidecarError::invalid(
                "upstream",
                format!(
                    "`{}` must start with http:// (same-pod cleartext)",
                    self.upstream
                ),
            ));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(SidecarError::invalid(
                "upstream",
                format!(
                    "`{}` must not have a path; paths pass through",
                    self.upstream
                ),
            ));
        }
        let authority = uri.authority().cloned().ok_or_else(|| {
            SidecarError::invalid("upstream", format!("`{}` has no host", self.upstream))
        })?;
        if authority.port_u16().is_none() {
            return Err(SidecarError::invalid(
                "upstream",
                format!("`{}` needs an explicit port, e.g. :8080", self.upstream),
            ));
        }
        Ok(authority)
    }
}

#[cfg(test)]
mod tests;
