//! Knative Serving as far as traffic is concerned: the webhook's defaulting and
//! validation of traffic lists, and the Service → Configuration/Route → Revision
//! controllers (revisions are Ready at once: there are no pods here).
//!
//! Rules mirror knative.dev/serving `pkg/apis/serving/v1` (`route_validation.go`,
//! `SetDefaults`); messages use Knative's `<message>: <field>` wording.

use serde_json::{json, Value};

use crate::controllers::{conditions, get, list, owner_ref, upsert};
use crate::meta::meta_str;
use crate::state::State;

pub mod pods;
mod validation;

pub use validation::{default, validate};

pub const GROUP: &str = "serving.knative.dev";
pub const API_VERSION: &str = "serving.knative.dev/v1";
const MANAGER: &str = "controller";

/// One pass of the Service, Configuration and Route controllers over a namespace.
pub fn reconcile(state: &mut State, ns: &str) {
    for svc in list(state, API_VERSION, "Service", ns) {
        reconcile_service(state, ns, &svc);
    }
    for config in list(state, API_VERSION, "Configuration", ns) {
        reconcile_configuration(state, ns, &config);
    }
    for route in list(state, API_VERSION, "Route", ns) {
        reconcile_route(state, ns, &route);
    }
    for svc in list(state, API_VERSION, "Service", ns) {
        service_status(state, ns, &svc);
    }
}

/// Writes a Knative object as the emulated Knative controller.
fn upsert_knative(
    state: &mut State,
    kind: &str,
    ns: &str,
    name: &str,
    mutate: impl FnOnce(&mut Value),
) {
    upsert(state, MANAGER, API_VERSION, kind, ns, name, mutate);
}

fn reconcile_service(state: &mut State, ns: &str, svc: &Value) {
    let name = meta_str(svc, "name").to_string();
    let owner = owner_ref(svc);
    let labels = json!({ "serving.knative.dev/service": name });
    let template = svc
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    upsert_knative(state, "Configuration", ns, &name, |c| {
        c["metadata"]["labels"] = labels.clone();
        c["metadata"]["ownerReferences"] = json!([owner.clone()]);
        c["spec"] = json!({ "template": template });
    });
    let mut traffic = svc
        .pointer("/spec/traffic")
        .cloned()
        .unwrap_or_else(|| json!([]));
    for t in traffic.as_array_mut().into_iter().flatten() {
        if t.get("latestRevision").and_then(Value::as_bool) == Some(true) {
            t["configurationName"] = json!(name);
        }
    }
    upsert_knative(state, "Route", ns, &name, |r| {
        r["metadata"]["labels"] = labels;
        r["metadata"]["ownerReferences"] = json!([owner]);
        r["spec"] = json!({ "traffic": traffic });
    });
}

fn reconcile_configuration(state: &mut State, ns: &str, config: &Value) {
    let name = meta_str(config, "name").to_string();
    let generation = config
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if config
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        == Some(generation)
    {
        return;
    }
    let template = config
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let revision = template
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{name}-{generation:05}"));
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels["serving.knative.dev/configuration"] = json!(name);
    labels["serving.knative.dev/configurationGeneration"] = json!(generation.to_string());
    if let Some(svc) = config.pointer("/metadata/labels/serving.knative.dev~1service") {
        labels["serving.knative.dev/service"] = svc.clone();
    }
    let annotations = template.pointer("/metadata/annotations").cloned();
    let owner = owner_ref(config);
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut new_pod = None;
    upsert_knative(state, "Revision", ns, &revision, |r| {
        if r.get("spec").is_none() {
            r["metadata"]["labels"] = labels;
            if let Some(a) = annotations {
                r["metadata"]["annotations"] = a;
            }
            r["metadata"]["ownerReferences"] = json!([owner]);
            r["spec"] = spec;
            r["metadata"]["namespace"] = json!(ns);
            r["metadata"]["name"] = json!(revision);
            new_pod = Some(pods::revision_pod(r, pods::QUEUE_PROXY_IMAGE));
        }
        let previous = r.get("status").cloned();
        r["status"] = json!({
            "observedGeneration": 1,
            "conditions": conditions(previous.as_ref(), &[("Active", true, "", ""), ("ContainerHealthy", true, "", ""), ("Ready", true, "", ""), ("ResourcesAvailable", true, "", "")]),
        });
    });
    // The revision's Deployment and ReplicaSet are not served; its pod is created
    // through the API (and admission) by the emulator's pod creator.
    if state.revision_pods {
        state.pending_pods.extend(new_pod);
    }
    upsert_knative(state, "Configuration", ns, &name, |c| {
        let previous = c.get("status").cloned();
        c["status"] = json!({
            "observedGeneration": generation,
            "latestCreatedRevisionName": revision,
            "latestReadyRevisionName": revision,
            "conditions": conditions(previous.as_ref(), &[("Ready", true, "", "")]),
        });
    });
}

fn reconcile_route(state: &mut State, ns: &str, route: &Value) {
    let name = meta_str(route, "name").to_string();
    let generation = route
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut missing = String::new();
    let mut resolved = Vec::new();
    for t in route
        .pointer("/spec/traffic")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut revision = t
            .get("revisionName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if revision.is_empty() {
            let config_name = t
                .get("configurationName")
                .and_then(Value::as_str)
                .unwrap_or("");
            revision = get(state, API_VERSION, "Configuration", ns, config_name)
                .and_then(|c| {
                    c.pointer("/status/latestReadyRevisionName")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            if revision.is_empty() {
                missing = format!(
                    "Configuration {config_name:?} referenced in traffic not found or not ready."
                );
                continue;
            }
        } else if get(state, API_VERSION, "Revision", ns, &revision).is_none() {
            missing = format!("Revision {revision:?} referenced in traffic not found.");
        }
        let mut entry = json!({
            "revisionName": revision,
            "latestRevision": t.get("latestRevision").and_then(Value::as_bool).unwrap_or(false),
            "percent": t.get("percent").and_then(Value::as_i64).unwrap_or(0),
        });
        if let Some(tag) = t
            .get("tag")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            entry["tag"] = json!(tag);
            entry["url"] = json!(format!("http://{tag}-{name}.{ns}.example.com"));
        }
        resolved.push(entry);
    }
    let ready = missing.is_empty();
    let reason = if ready { "" } else { "RevisionMissing" };
    upsert_knative(state, "Route", ns, &name, |r| {
        let previous = r.get("status").cloned();
        let mut status = json!({
            "observedGeneration": generation,
            "url": format!("http://{name}.{ns}.example.com"),
            "address": { "url": format!("http://{name}.{ns}.svc.cluster.local") },
            "conditions": conditions(previous.as_ref(), &[("AllTrafficAssigned", ready, reason, &missing), ("Ready", ready, reason, &missing)]),
        });
        // Like Knative, keep the last good traffic assignment while a target is missing.
        status["traffic"] = if ready {
            json!(resolved)
        } else {
            previous
                .and_then(|p| p.get("traffic").cloned())
                .unwrap_or(json!([]))
        };
        r["status"] = status;
    });
}

fn service_status(state: &mut State, ns: &str, svc: &Value) {
    let name = meta_str(svc, "name").to_string();
    let generation = svc
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let config = get(state, API_VERSION, "Configuration", ns, &name).unwrap_or_default();
    let route = get(state, API_VERSION, "Route", ns, &name).unwrap_or_default();
    let ready = |o: &Value| {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    };
    let (config_ready, route_ready) = (ready(&config), ready(&route));
    let route_message = route
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c.get("message").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    upsert_knative(state, "Service", ns, &name, |s| {
        let previous = s.get("status").cloned();
        let status_of = |o: &Value, f: &str| {
            o.pointer(&format!("/status/{f}"))
                .cloned()
                .unwrap_or(Value::Null)
        };
        s["status"] = json!({
            "observedGeneration": generation,
            "latestCreatedRevisionName": status_of(&config, "latestCreatedRevisionName"),
            "latestReadyRevisionName": status_of(&config, "latestReadyRevisionName"),
            "traffic": status_of(&route, "traffic"),
            "url": status_of(&route, "url"),
            "address": status_of(&route, "address"),
            "conditions": conditions(previous.as_ref(), &[
                ("ConfigurationsReady", config_ready, "", ""),
                ("Ready", config_ready && route_ready, if route_ready { "" } else { "RevisionMissing" }, &route_message),
                ("RoutesReady", route_ready, if route_ready { "" } else { "RevisionMissing" }, &route_message),
            ]),
        });
    });
}
