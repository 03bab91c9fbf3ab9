//! KServe (serverless mode) as far as rollouts are concerned: the webhook's
//! `canaryTrafficPercent` bounds and the InferenceService reconciler.
//!
//! Like the real controller, the reconciler owns the predictor Knative Service
//! (`<isvc>-predictor`) and **overwrites** its `spec.traffic` from
//! `canaryTrafficPercent` and `status.components.predictor.latestRolledoutRevision` on
//! every pass: a client that patches a KServe-owned ksvc directly is reverted.

use serde_json::{json, Map, Value};

use crate::controllers::{conditions, controller_uid, get, list, owner_ref, upsert};
use crate::kinds::Kind;
use crate::knative;
use crate::meta::meta_str;
use crate::state::State;
use crate::status::Cause;

pub const GROUP: &str = "serving.kserve.io";
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
/// KServe's controller-runtime manager name, as it appears in managedFields.
const MANAGER: &str = "manager";

/// KServe's validating webhook, for the fields rollouts use.
pub fn validate(kind: &Kind, obj: &Value) -> Vec<Cause> {
    if kind.group != GROUP {
        return Vec::new();
    }
    let mut causes = Vec::new();
    let Some(predictor) = obj.pointer("/spec/predictor").and_then(Value::as_object) else {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: predictor is required".into(),
            field: "spec.predictor".into(),
        });
        return causes;
    };
    if let Some(pct) = predictor.get("canaryTrafficPercent") {
        if pct.as_i64().is_none_or(|p| !(0..=100).contains(&p)) {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {pct}: TrafficPercent must be between [0, 100]."),
                field: "spec.predictor.canaryTrafficPercent".into(),
            });
        }
    }
    causes
}

/// One pass of the InferenceService reconciler over a namespace.
pub fn reconcile(state: &mut State, ns: &str) {
    for isvc in list(state, API_VERSION, "InferenceService", ns) {
        reconcile_one(state, ns, &isvc);
    }
}

fn reconcile_one(state: &mut State, ns: &str, isvc: &Value) {
    let name = meta_str(isvc, "name").to_string();
    let ksvc_name = format!("{name}-predictor");
    let predictor = isvc
        .pointer("/spec/predictor")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let canary = predictor
        .get("canaryTrafficPercent")
        .and_then(Value::as_i64);
    let rollout = isvc
        .pointer("/status/components/predictor")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let rolled = rollout
        .get("latestRolledoutRevision")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tag_routing = isvc
        .pointer("/metadata/annotations/serving.kserve.io~1enable-tag-routing")
        .and_then(Value::as_str)
        == Some("true");

    let traffic = match canary {
        Some(pct) if pct != 100 && !rolled.is_empty() => json!([
            { "tag": "latest", "latestRevision": true, "percent": pct },
            { "tag": "prev", "latestRevision": false, "revisionName": rolled, "percent": 100 - pct },
        ]),
        _ if tag_routing => json!([{ "tag": "latest", "latestRevision": true, "percent": 100 }]),
        _ => json!([{ "latestRevision": true, "percent": 100 }]),
    };
    let template = json!({
        "metadata": {
            "labels": { "serving.kserve.io/inferenceservice": name, "component": "predictor" },
        },
        "spec": { "containers": [predictor_container(&name, &predictor)] },
    });
    let owner = owner_ref(isvc);
    let uid = meta_str(isvc, "uid").to_string();
    if let Some(existing) = get(state, knative::API_VERSION, "Service", ns, &ksvc_name) {
        if controller_uid(&existing).is_some_and(|u| u != uid) {
            tracing::warn!(ns, ksvc_name, "Knative Service exists and is controlled by another owner; KServe would not take it over");
            return;
        }
    }
    upsert(
        state,
        MANAGER,
        knative::API_VERSION,
        "Service",
        ns,
        &ksvc_name,
        |k| {
            k["metadata"]["labels"]["serving.kserve.io/inferenceservice"] = json!(name);
            k["metadata"]["labels"]["component"] = json!("predictor");
            k["metadata"]["ownerReferences"] = json!([owner]);
            if !k.get("spec").is_some_and(Value::is_object) {
                k["spec"] = json!({});
            }
            k["spec"]["template"] = template;
            k["spec"]["traffic"] = traffic;
        },
    );

    let Some(ksvc) = get(state, knative::API_VERSION, "Service", ns, &ksvc_name) else {
        return;
    };
    let observed =
        ksvc.pointer("/status/observedGeneration") == ksvc.pointer("/metadata/generation");
    let latest_ready = ksvc
        .pointer("/status/latestReadyRevisionName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ready = ksvc
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let mut component = Map::new();
    component.insert(
        "latestCreatedRevision".into(),
        ksvc.pointer("/status/latestCreatedRevisionName")
            .cloned()
            .unwrap_or(Value::Null),
    );
    component.insert("latestReadyRevision".into(), json!(latest_ready));
    let (mut latest_rolled, mut previous_rolled) = (
        rolled.clone(),
        rollout.get("previousRolledoutRevision").cloned(),
    );
    let full_rollout = canary.is_none_or(|p| p == 100) || rolled.is_empty();
    if observed && ready && full_rollout && !latest_ready.is_empty() && latest_ready != rolled {
        if !rolled.is_empty() {
            previous_rolled = Some(json!(rolled));
        }
        latest_rolled = latest_ready.clone();
    }
    if !latest_rolled.is_empty() {
        component.insert("latestRolledoutRevision".into(), json!(latest_rolled));
    }
    if let Some(prev) = previous_rolled {
        component.insert("previousRolledoutRevision".into(), prev);
    }
    component.insert(
        "traffic".into(),
        ksvc.pointer("/status/traffic")
            .cloned()
            .unwrap_or(json!([])),
    );
    component.insert(
        "url".into(),
        ksvc.pointer("/status/url").cloned().unwrap_or(Value::Null),
    );
    component.retain(|_, v| !v.is_null());
    let generation = isvc
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    upsert(
        state,
        MANAGER,
        API_VERSION,
        "InferenceService",
        ns,
        &name,
        |i| {
            let previous = i.get("status").cloned();
            let reason = if ready { "" } else { "RevisionMissing" };
            i["status"] = json!({
                "observedGeneration": generation,
                "url": format!("http://{name}.{ns}.example.com"),
                "address": { "url": format!("http://{name}.{ns}.svc.cluster.local") },
                "components": { "predictor": Value::Object(component) },
                "conditions": conditions(previous.as_ref(), &[
                    ("IngressReady", ready, reason, ""),
                    ("PredictorReady", ready, reason, ""),
                    ("Ready", ready, reason, ""),
                ]),
            });
        },
    );
}

/// The model-server container KServe would generate for a predictor: a custom
/// container as given, or a framework server with the model's storage URI.
fn predictor_container(name: &str, predictor: &Value) -> Value {
    if let Some(first) = predictor.pointer("/containers/0").filter(|c| c.is_object()) {
        let mut c = first.clone();
        c["name"] = json!("kserve-container");
        return c;
    }
    let (framework, model) = predictor
        .as_object()
        .and_then(|p| {
            p.iter().find_map(|(k, v)| {
                let is_model = v.get("storageUri").is_some() || v.get("modelFormat").is_some();
                is_model.then(|| {
                    let format = v
                        .pointer("/modelFormat/name")
                        .and_then(Value::as_str)
                        .unwrap_or(k);
                    (format.to_string(), v.clone())
                })
            })
        })
        .unwrap_or_else(|| ("custom".to_string(), json!({})));
    let mut container = json!({
        "name": "kserve-container",
        "image": model.get("image").cloned().unwrap_or_else(|| json!(format!("kserve/{framework}server:latest"))),
        "args": [format!("--model_name={name}"), "--model_dir=/mnt/models"],
    });
    if let Some(uri) = model.get("storageUri") {
        container["env"] = json!([{ "name": "STORAGE_URI", "value": uri }]);
    }
    if let Some(resources) = model.get("resources") {
        container["resources"] = resources.clone();
    }
    container
}
