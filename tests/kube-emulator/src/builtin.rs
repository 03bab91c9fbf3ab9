//! Validation the API server applies to the built-in kinds we serve, where a client
//! could get it wrong: `events.k8s.io/v1` Events (what `kube::runtime::events::Recorder`
//! writes) and `coordination.k8s.io/v1` Leases (the sidecars' judge election).

use serde_json::Value;

use crate::kinds::Kind;
use crate::status::Cause;

/// Longest `note` the API server accepts on an events.k8s.io Event.
const MAX_NOTE_BYTES: usize = 1024;

pub fn validate(kind: &Kind, obj: &Value) -> Vec<Cause> {
    if kind.group == "events.k8s.io" && kind.kind == "Event" {
        return validate_event(obj);
    }
    if kind.group == "coordination.k8s.io" && kind.kind == "Lease" {
        return validate_lease(obj);
    }
    Vec::new()
}

/// What the API server's Lease validation checks (`pkg/apis/coordination/validation`):
/// durations positive, transitions non-negative.
fn validate_lease(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let int = |f: &str| spec.get(f).and_then(Value::as_i64);
    if int("leaseDurationSeconds").is_some_and(|d| d <= 0) {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "must be greater than 0".into(),
            field: "spec.leaseDurationSeconds".into(),
        });
    }
    if int("leaseTransitions").is_some_and(|t| t < 0) {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "must be greater than or equal to 0".into(),
            field: "spec.leaseTransitions".into(),
        });
    }
    causes
}

fn validate_event(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let text = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or("");
    for field in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        if text(field).is_empty() {
            causes.push(Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: field.into(),
            });
        }
    }
    if !matches!(text("type"), "Normal" | "Warning") {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {:?}: supported values: \"Normal\", \"Warning\"",
                text("type")
            ),
            field: "type".into(),
        });
    }
    if text("note").len() > MAX_NOTE_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: may not be more than {MAX_NOTE_BYTES} bytes"),
            field: "note".into(),
        });
    }
    if obj.get("regarding").is_none_or(|r| !r.is_object()) {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "regarding".into(),
        });
    }
    causes
}
