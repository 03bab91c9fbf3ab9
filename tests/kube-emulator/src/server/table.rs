//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for
//! (`Accept: application/json;as=Table;...`): Name, the CRD's
//! `additionalPrinterColumns` (a JSONPath subset: fields, `['key']`, `[n]`, `[*]` and
//! `[?(@.field==value)]` filters), and Age, rendered as the API server renders them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::kinds::Kind;

/// Whether the client asked for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

pub(crate) fn render(kind: &Kind, objects: &[Value], resource_version: &str) -> Value {
    let columns: Vec<Value> = kind
        .schema
        .as_ref()
        .map(|s| s.printer_columns.clone())
        .unwrap_or_default();
    let has_age = columns.iter().any(|c| c["name"] == "Age");
    let mut definitions = vec![
        json!({ "name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0 }),
    ];
    for c in &columns {
        definitions.push(json!({
            "name": c["name"], "type": c.get("type").cloned().unwrap_or(json!("string")),
            "format": "", "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    if !has_age {
        definitions.push(json!({ "name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0 }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![obj
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null)];
            for c in &columns {
                let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
                cells.push(cell(
                    obj,
                    path,
                    c.get("type").and_then(Value::as_str).unwrap_or("string"),
                ));
            }
            if !has_age {
                cells.push(cell(obj, ".metadata.creationTimestamp", "date"));
            }
            json!({ "cells": cells, "object": obj })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": definitions, "rows": rows,
    })
}

fn cell(obj: &Value, path: &str, column_type: &str) -> Value {
    let found = select(obj, path);
    match (column_type, found.as_slice()) {
        (_, []) => Value::Null,
        ("date", [Value::String(ts), ..]) => json!(age(ts)),
        (_, [one]) => match one {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => (*one).clone(),
            other => json!(other.to_string()),
        },
        (_, many) => json!(many
            .iter()
            .map(|v| v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(",")),
    }
}

/// Evaluates the JSONPath subset used by printer columns.
fn select<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let selector = &after[..end];
            rest = &after[end + 1..];
            let arrays: Vec<&Value> = current.iter().copied().filter(|v| v.is_array()).collect();
            let items = arrays.into_iter().filter_map(Value::as_array).flatten();
            current = if let Some(key) = selector
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
            {
                // `['serving\.knative\.dev/configuration']`: a map key with escaped dots.
                let key = key.replace("\\.", ".");
                current.into_iter().filter_map(|v| v.get(&key)).collect()
            } else if selector == "*" {
                items.collect()
            } else if let Ok(i) = selector.parse::<usize>() {
                items.skip(i).take(1).collect()
            } else if let Some((field, expected)) = filter(selector) {
                items
                    .filter(|item| item.get(field).is_some_and(|v| matches(v, expected)))
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

/// `?(@.type=='Ready')` → ("type", "'Ready'").
fn filter(selector: &str) -> Option<(&str, &str)> {
    let inner = selector.strip_prefix("?(@.")?.strip_suffix(')')?;
    let (field, value) = inner.split_once("==")?;
    Some((field.trim(), value.trim()))
}

fn matches(actual: &Value, expected: &str) -> bool {
    let unquoted = expected.trim_matches(|c| c == '\'' || c == '"');
    match actual {
        Value::String(s) => s == unquoted,
        other => *other == serde_json::from_str::<Value>(expected).unwrap_or(Value::Null),
    }
}

/// Age like kubectl prints it: `42s`, `5m`, `3h`, `2d`.
fn age(timestamp: &str) -> String {
    let then = parse_rfc3339(timestamp).unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let secs = now.saturating_sub(then);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn parse_rfc3339(ts: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| ts.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_select_like_kubectl() {
        let obj = json!({ "status": {
            "conditions": [{ "type": "Ready", "status": "True" }, { "type": "Other", "status": "False" }],
            "traffic": [{ "tag": "prev", "percent": 90, "latestRevision": false }, { "latestRevision": true, "percent": 10 }],
        }});
        assert_eq!(
            select(&obj, ".status.conditions[?(@.type=='Ready')].status"),
            [&json!("True")]
        );
        assert_eq!(
            select(&obj, ".status.traffic[?(@.latestRevision==true)].percent"),
            [&json!(10)]
        );
        assert_eq!(
            select(&obj, ".status.traffic[?(@.tag=='prev')].percent"),
            [&json!(90)]
        );
        assert_eq!(select(&obj, ".status.traffic[*].percent").len(), 2);
        assert!(select(&obj, ".status.missing").is_empty());
        let labelled =
            json!({ "metadata": { "labels": { "serving.knative.dev/configuration": "m" } } });
        assert_eq!(
            select(
                &labelled,
                r".metadata.labels['serving\.knative\.dev/configuration']"
            ),
            [&json!("m")]
        );
        assert_eq!(
            cell(&obj, ".status.traffic[0].percent", "integer"),
            json!(90)
        );
    }

    #[test]
    fn timestamps_round_trip_through_the_calendar() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
