//! Knative's defaulting and validating webhooks for traffic (`SetDefaults` and
//! `route_validation.go` in knative.dev/serving `pkg/apis/serving/v1`).

use serde_json::{json, Value};

use super::GROUP;
use crate::kinds::Kind;
use crate::status::Cause;

/// Knative's defaulting webhook: a Service without traffic gets 100% to the latest
/// revision; a target without `latestRevision` gets `latestRevision: revisionName == ""`.
pub fn default(kind: &Kind, obj: &mut Value) {
    if kind.group != GROUP || !matches!(kind.kind, "Service" | "Route") {
        return;
    }
    if obj.get("spec").is_none() && kind.kind == "Service" {
        obj["spec"] = json!({ "traffic": [{ "latestRevision": true, "percent": 100 }] });
        return;
    }
    // A non-object spec is left for schema validation to reject.
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let empty = spec
        .get("traffic")
        .and_then(Value::as_array)
        .is_none_or(|t| t.is_empty());
    if kind.kind == "Service" && empty {
        spec.insert(
            "traffic".into(),
            json!([{ "latestRevision": true, "percent": 100 }]),
        );
    }
    if let Some(traffic) = spec.get_mut("traffic").and_then(Value::as_array_mut) {
        for target in traffic.iter_mut().filter_map(Value::as_object_mut) {
            if !target.contains_key("latestRevision") {
                let pinned = target
                    .get("revisionName")
                    .and_then(Value::as_str)
                    .is_some_and(|r| !r.is_empty());
                target.insert("latestRevision".into(), json!(!pinned));
            }
        }
    }
}

/// Knative's validating webhook rules for `spec.traffic` of Services and Routes.
pub fn validate(kind: &Kind, obj: &Value) -> Vec<Cause> {
    if kind.group != GROUP || !matches!(kind.kind, "Service" | "Route") {
        return Vec::new();
    }
    let Some(traffic) = obj.pointer("/spec/traffic").and_then(Value::as_array) else {
        return if kind.kind == "Route" {
            vec![cause("Traffic targets sum to 0, want 100", "spec.traffic")]
        } else {
            Vec::new()
        };
    };
    let in_service = kind.kind == "Service";
    let mut causes = Vec::new();
    let mut sum = 0i64;
    let mut tags: Vec<(String, usize)> = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        let at = |f: &str| format!("spec.traffic[{i}].{f}");
        let revision = t.get("revisionName").and_then(Value::as_str).unwrap_or("");
        let configuration = t
            .get("configurationName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(latest) = t.get("latestRevision").and_then(Value::as_bool) {
            if latest != revision.is_empty() {
                causes.push(cause(
                    &format!(
                        "may not set revisionName {revision:?} when latestRevision is {latest}"
                    ),
                    &at("latestRevision"),
                ));
            }
        }
        if in_service && !configuration.is_empty() {
            causes.push(cause("must not set the field(s)", &at("configurationName")));
        } else if !revision.is_empty() && !configuration.is_empty() {
            causes.push(cause(
                "expected exactly one, got both",
                &format!("{}, {}", at("configurationName"), at("revisionName")),
            ));
        } else if revision.is_empty() && configuration.is_empty() && !in_service {
            causes.push(cause(
                "expected exactly one, got neither",
                &format!("{}, {}", at("configurationName"), at("revisionName")),
            ));
        }
        if let Some(p) = t.get("percent").and_then(Value::as_i64) {
            if !(0..=100).contains(&p) {
                causes.push(cause(&format!("expected 0 <= {p} <= 100"), &at("percent")));
            }
            sum += p;
        }
        if t.get("url")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
        {
            causes.push(cause("must not set the field(s)", &at("url")));
        }
        if let Some(tag) = t
            .get("tag")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if !is_dns1035_label(tag) {
                causes.push(cause(
                    &format!("invalid value: {tag}: not a DNS 1035 label"),
                    &at("tag"),
                ));
            }
            match tags.iter().find(|(t, _)| t == tag) {
                Some((_, first)) => causes.push(cause(
                    &format!("Multiple definitions for {tag:?}"),
                    &format!("{}, spec.traffic[{first}].tag", at("tag")),
                )),
                None => tags.push((tag.to_string(), i)),
            }
        }
    }
    if sum != 100 {
        causes.push(cause(
            &format!("Traffic targets sum to {sum}, want 100"),
            "spec.traffic",
        ));
    }
    causes
}

fn cause(message: &str, field: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: message.to_string(),
        field: field.to_string(),
    }
}

fn is_dns1035_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
