//! Resources of a serving container: without requests the scheduler packs model servers
//! onto nodes that cannot hold them; without a memory limit one leak takes the node down.

use super::{PolicyName, Violation};
use crate::workload::ContainerSite;

/// Checks one serving container for CPU/memory requests and a memory limit.
pub fn check(site: &ContainerSite<'_>) -> Option<Violation> {
    let resources = site.spec.resources.as_ref();
    let has = |map: Option<&std::collections::BTreeMap<String, _>>, key: &str| {
        map.is_some_and(|m| m.contains_key(key))
    };
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let mut missing = Vec::new();
    if !has(requests, "cpu") {
        missing.push("requests.cpu");
    }
    if !has(requests, "memory") {
        missing.push("requests.memory");
    }
    if !has(limits, "memory") {
        missing.push("limits.memory");
    }
    if missing.is_empty() {
        return None;
    }
    Some(Violation {
        policy: PolicyName::Resources,
        container: Some(site.name.clone()),
        field: format!("{}.resources", site.path),
        message: format!("does not declare {}", missing.join(", ")),
        hint: "set resources.requests.cpu, resources.requests.memory and resources.limits.memory \
               sized for the loaded model"
            .into(),
    })
}
