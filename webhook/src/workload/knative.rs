//! How Knative's revision reconciler lays out a pod: the user container keeps its
//! liveness probe but loses an HTTP/TCP/gRPC readiness probe, which moves (as JSON) into
//! queue-proxy's `SERVING_READINESS_PROBE` env var; queue-proxy then probes the user
//! container and is itself the pod's kubelet-visible readiness.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Probe;

use super::{podspec::PodSpecView, ContainerSite, Role};

pub const REVISION_LABEL: &str = "serving.knative.dev/revision";
pub const QUEUE_PROXY: &str = "queue-proxy";
pub const READINESS_ENV: &str = "SERVING_READINESS_PROBE";

/// A pod made from a Knative Revision: labelled by Knative and carrying queue-proxy.
pub fn is_revision_pod(labels: &BTreeMap<String, String>, spec: &PodSpecView) -> bool {
    labels.contains_key(REVISION_LABEL)
        && spec
            .containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.name.as_deref() == Some(QUEUE_PROXY))
}

/// Gives the serving container the readiness probe queue-proxy runs for it.
///
/// The env var holds one probe (single container) or a list (multi-container revisions,
/// where the entries follow the order of the containers that had probes).
pub fn attach_queue_proxy_readiness(spec: &PodSpecView, sites: &mut [ContainerSite<'_>]) {
    let containers = spec.containers.as_deref().unwrap_or_default();
    let Some(raw) = containers
        .iter()
        .find(|c| c.name.as_deref() == Some(QUEUE_PROXY))
        .and_then(|qp| qp.env_value(READINESS_ENV))
    else {
        return;
    };
    let probes: Vec<Probe> = match serde_json::from_str::<Probe>(raw) {
        Ok(probe) => vec![probe],
        Err(_) => serde_json::from_str::<Vec<Probe>>(raw).unwrap_or_default(),
    };
    let mut probes = probes.into_iter();
    // The serving container is the one with a port; fall back to the only user container.
    let users: Vec<usize> = sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.role == Role::Regular && s.name != QUEUE_PROXY)
        .filter(|(_, s)| s.spec.readiness_probe.is_none())
        .map(|(i, _)| i)
        .collect();
    let serving = users
        .iter()
        .copied()
        .find(|&i| sites[i].spec.ports.as_ref().is_some_and(|p| !p.is_empty()));
    let order = serving
        .into_iter()
        .chain(users.iter().copied().filter(|&i| Some(i) != serving));
    for i in order {
        match probes.next() {
            Some(probe) => sites[i].delegated_readiness = Some(probe),
            None => break,
        }
    }
}
