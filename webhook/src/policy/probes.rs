//! Probes of a serving container: readiness must tell whether the model is loaded, and
//! liveness must not kill a container that is still warming up.

use k8s_openapi::api::core::v1::Probe;

use super::{PolicyName, Violation};
use crate::{
    config::ProbesPolicy,
    workload::{ContainerSite, Flavor},
};

// Kubernetes probe defaults.
const DEFAULT_PERIOD_SECONDS: i64 = 10;
const DEFAULT_FAILURE_THRESHOLD: i64 = 3;

/// Checks one serving container. `warmup` is the declared warm-up in seconds.
pub fn check(site: &ContainerSite<'_>, warmup: Option<u64>, cfg: &ProbesPolicy) -> Vec<Violation> {
    let violation = |field: &str, message: String, hint: String| Violation {
        policy: PolicyName::Probes,
        container: Some(site.name.clone()),
        field: format!("{}.{field}", site.path),
        message,
        hint,
    };
    let mut out = Vec::new();

    let readiness = site
        .spec
        .readiness_probe
        .as_ref()
        .or(site.delegated_readiness.as_ref());
    let ready_hint = "add readinessProbe.httpGet on the model server's ready endpoint, e.g. path /v2/health/ready";
    match readiness.map(Handler::of) {
        None => {
            let knative = if site.flavor == Flavor::KnativeTemplate {
                " (Knative would default it to a TCP probe, which passes before the model is loaded)"
            } else {
                ""
            };
            out.push(violation(
                "readinessProbe",
                format!("has no readiness probe{knative}"),
                ready_hint.into(),
            ));
        }
        Some(Handler::None) => out.push(violation(
            "readinessProbe",
            "readiness probe has no handler (httpGet, grpc, exec or tcpSocket)".into(),
            ready_hint.into(),
        )),
        Some(Handler::Tcp) if !cfg.allow_tcp_readiness => out.push(violation(
            "readinessProbe",
            "readiness probe only opens a TCP socket, which succeeds before the model is loaded"
                .into(),
            cfg.readiness_hint.clone(),
        )),
        Some(_) => {}
    }

    let liveness = site.spec.liveness_probe.as_ref();
    if liveness.is_none() {
        out.push(violation(
            "livenessProbe",
            "has no liveness probe, so a hung model server is never restarted".into(),
            "add livenessProbe.httpGet on the server's health endpoint (e.g. /v2/health/live)"
                .into(),
        ));
    }

    if let (Some(warmup), Some(liveness)) = (warmup, liveness) {
        let startup = site
            .spec
            .startup_probe
            .as_ref()
            .map(covered_seconds)
            .unwrap_or(0);
        let live = covered_seconds(liveness);
        if startup.max(live) < warmup {
            let failure = warmup.div_ceil(DEFAULT_PERIOD_SECONDS as u64);
            let (field, how) = match site.spec.startup_probe {
                Some(_) => (
                    "startupProbe",
                    format!("its startup probe covers only {startup}s"),
                ),
                None => (
                    "livenessProbe",
                    format!("liveness can restart it after {live}s"),
                ),
            };
            out.push(violation(
                field,
                format!("the workload declares a {warmup}s warm-up but {how}, so it can be killed while the model loads"),
                format!(
                    "add a startupProbe with initialDelaySeconds + periodSeconds × failureThreshold ≥ {warmup} \
                     (e.g. periodSeconds: {DEFAULT_PERIOD_SECONDS}, failureThreshold: {failure})"
                ),
            ));
        }
    }
    out
}

/// Seconds before a probe's failures can act: `initialDelaySeconds + periodSeconds ×
/// failureThreshold`, with Kubernetes' defaults for unset fields.
pub fn covered_seconds(probe: &Probe) -> u64 {
    let delay = probe.initial_delay_seconds.unwrap_or(0).max(0) as i64;
    let period = probe
        .period_seconds
        .filter(|p| *p > 0)
        .map_or(DEFAULT_PERIOD_SECONDS, i64::from);
    let failures = probe
        .failure_threshold
        .filter(|f| *f > 0)
        .map_or(DEFAULT_FAILURE_THRESHOLD, i64::from);
    (delay + period * failures).max(0) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Http,
    Grpc,
    Exec,
    Tcp,
    None,
}

impl Handler {
    fn of(probe: &Probe) -> Self {
        if probe.http_get.is_some() {
            Handler::Http
        } else if probe.grpc.is_some() {
            Handler::Grpc
        } else if probe.exec.is_some() {
            Handler::Exec
        } else if probe.tcp_socket.is_some() {
            Handler::Tcp
        } else {
            Handler::None
        }
    }
}
