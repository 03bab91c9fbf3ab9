//! KServe-owned Knative Services: the InferenceService is the source of truth (its
//! controller overwrites the Knative Service's traffic), so roles are read from
//! `spec.predictor.canaryTrafficPercent` and writes go to the InferenceService.

use serde_json::{json, Value};

use super::knative::Role;

pub const API_GROUP: &str = "serving.kserve.io";

/// The controlling InferenceService of a Knative Service, from its ownerReferences.
pub fn owner(service: &Value) -> Option<String> {
    service
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| {
            r.get("kind").and_then(Value::as_str) == Some("InferenceService")
                && r.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with(API_GROUP))
        })?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// `spec.predictor.canaryTrafficPercent`, if set.
pub fn canary_percent(isvc: &Value) -> Option<i64> {
    isvc.pointer("/spec/predictor/canaryTrafficPercent")
        .and_then(Value::as_i64)
}

/// The revision KServe falls back to: the last fully rolled-out one.
pub fn rolled_out(isvc: &Value) -> Option<&str> {
    isvc.pointer("/status/components/predictor/latestRolledoutRevision")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The role of `me` (with `knative_role` from the Knative Service's traffic, which
/// tells whether it carries traffic at all).
pub fn role(isvc: &Value, me: &str, knative_role: &Role) -> Role {
    if *knative_role == Role::Idle {
        return Role::Idle;
    }
    let Some(stable) = rolled_out(isvc) else {
        return Role::Stable;
    };
    match canary_percent(isvc) {
        Some(p) if stable != me && (1..100).contains(&p) => Role::Canary {
            percent: p,
            stable: stable.to_string(),
        },
        Some(0) if stable != me => Role::Idle,
        _ => Role::Stable,
    }
}

/// The spec part of a patch setting the canary share (`None` = full rollout, which
/// KServe expresses by removing the field).
pub fn canary_spec(percent: Option<i64>) -> Value {
    json!({ "predictor": { "canaryTrafficPercent": percent } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isvc(pct: Option<i64>, rolled: &str) -> Value {
        let mut v = json!({
            "spec": { "predictor": {} },
            "status": { "components": { "predictor": { "latestRolledoutRevision": rolled } } },
        });
        if let Some(p) = pct {
            v["spec"]["predictor"]["canaryTrafficPercent"] = json!(p);
        }
        v
    }

    #[test]
    fn owner_is_found_from_owner_references() {
        let ksvc = json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": "iris", "uid": "u", "controller": true },
        ]}});
        assert_eq!(owner(&ksvc).as_deref(), Some("iris"));
        assert_eq!(owner(&json!({ "metadata": {} })), None);
    }

    #[test]
    fn roles_follow_canary_traffic_percent() {
        let carrying = Role::Canary {
            percent: 10,
            stable: "x".into(),
        };
        assert_eq!(
            role(&isvc(Some(10), "p-1"), "p-2", &carrying),
            Role::Canary {
                percent: 10,
                stable: "p-1".into()
            }
        );
        assert_eq!(
            role(&isvc(Some(10), "p-1"), "p-1", &Role::Stable),
            Role::Stable
        );
        assert_eq!(role(&isvc(None, "p-2"), "p-2", &Role::Stable), Role::Stable);
        assert_eq!(role(&isvc(Some(0), "p-1"), "p-2", &carrying), Role::Idle);
        assert_eq!(role(&isvc(Some(10), "p-1"), "p-3", &Role::Idle), Role::Idle);
    }

    #[test]
    fn full_rollout_removes_the_field() {
        assert_eq!(
            canary_spec(None),
            json!({ "predictor": { "canaryTrafficPercent": null } })
        );
        assert_eq!(
            canary_spec(Some(0)),
            json!({ "predictor": { "canaryTrafficPercent": 0 } })
        );
    }
}
