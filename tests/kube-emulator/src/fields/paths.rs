//! Field paths over JSON objects: enumerating leaf fields, reading, removing and
//! merging at a path, with keyed lists addressed by their merge key.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{FieldPath, Seg, Writer};

/// Lists merged by key instead of replaced: (field name, key field).
const LIST_KEYS: &[(&str, &str)] = &[
    ("webhooks", "name"),
    ("containers", "name"),
    ("initContainers", "name"),
    ("env", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("conditions", "type"),
];

/// Leaf field paths of an object for the given writer's subresource.
pub(super) fn fields_of(obj: &Value, w: &Writer<'_>) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (key, value) in map {
        let path = vec![Seg::Field(key.clone())];
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for sub in ["labels", "annotations"] {
                    if let Some(m) = value.get(sub).and_then(Value::as_object) {
                        for k in m.keys() {
                            out.insert(vec![
                                Seg::Field(key.clone()),
                                Seg::Field(sub.into()),
                                Seg::Field(k.clone()),
                            ]);
                        }
                    }
                }
            }
            "status" if w.status_separate && w.subresource != "status" => {}
            _ if w.status_separate && w.subresource == "status" && key != "status" => {}
            _ => walk(value, path, key, &mut out),
        }
    }
    out
}

fn walk(value: &Value, path: FieldPath, name: &str, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let mut p = path.clone();
                p.push(Seg::Field(k.clone()));
                walk(v, p, k, out);
            }
        }
        Value::Array(items) if !items.is_empty() => match list_key(name, items) {
            Some(key) => {
                for item in items {
                    let mut p = path.clone();
                    p.push(Seg::Key(key.to_string(), key_value(item, key)));
                    walk(item, p, "", out);
                }
            }
            None => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// The merge key of list `name`, if it is a keyed list and every item carries the key.
fn list_key(name: &str, items: &[Value]) -> Option<&'static str> {
    let (_, key) = LIST_KEYS.iter().find(|(list, _)| *list == name)?;
    items.iter().all(|i| i.get(*key).is_some()).then_some(*key)
}

pub(super) fn key_value(item: &Value, key: &str) -> String {
    match item.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

pub(super) fn value_at<'a>(obj: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut node = obj;
    for seg in path {
        node = match seg {
            Seg::Field(f) => node.get(f)?,
            Seg::Key(k, v) => node.as_array()?.iter().find(|i| key_value(i, k) == *v)?,
        };
    }
    Some(node)
}

/// Removes the field at `path`, and parents left empty by the removal (as structured
/// merge does: an emptied `spec.template.spec` disappears with its last field).
pub(super) fn remove_at(node: &mut Value, path: &[Seg]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match first {
        Seg::Field(f) => {
            let Some(map) = node.as_object_mut() else {
                return false;
            };
            let remove =
                rest.is_empty() || map.get_mut(f).is_some_and(|child| remove_at(child, rest));
            if remove {
                map.remove(f);
            }
            map.is_empty()
        }
        Seg::Key(k, v) => {
            let Some(items) = node.as_array_mut() else {
                return false;
            };
            let Some(pos) = items.iter().position(|i| key_value(i, k) == *v) else {
                return false;
            };
            let remove = rest.is_empty()
                || remove_at(&mut items[pos], rest)
                || items[pos]
                    .as_object()
                    .is_some_and(|m| m.len() == 1 && m.contains_key(k));
            if remove {
                items.remove(pos);
            }
            items.is_empty()
        }
    }
}

/// Deep merge used by apply: maps merge, keyed lists merge by key, everything else replaces.
pub fn merge_into(target: &mut Value, patch: &Value, name: &str) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) => merge_into(existing, v, k),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p))
            if list_key(name, p).is_some() && list_key(name, t).is_some() =>
        {
            let key = list_key(name, p).unwrap_or_default();
            for item in p {
                let kv = key_value(item, key);
                match t.iter_mut().find(|i| key_value(i, key) == kv) {
                    Some(existing) => merge_into(existing, item, ""),
                    None => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// `.spec.traffic`, `.webhooks[name="x"].clientConfig.caBundle`.
pub(super) fn render_path(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Key(k, v) => format!("[{k}=\"{v}\"]"),
        })
        .collect()
}
