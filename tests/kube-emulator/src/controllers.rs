//! What the emulated controllers share: read helpers, an idempotent upsert that writes
//! only on change (like a real reconciler), owner references and conditions.

use serde_json::{json, Value};

use crate::meta::{meta_str, now};
use crate::state::{State, WriteOptions};

/// Objects of a kind (by apiVersion and Kind) in a namespace.
pub fn list(state: &State, api_version: &str, kind: &str, namespace: &str) -> Vec<Value> {
    match state.kinds.by_type(api_version, kind) {
        Some(k) => state
            .store
            .list(&k, Some(namespace))
            .into_iter()
            .map(|s| s.object.clone())
            .collect(),
        None => Vec::new(),
    }
}

pub fn get(
    state: &State,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let k = state.kinds.by_type(api_version, kind)?;
    state
        .store
        .get(&k, namespace, name)
        .map(|s| s.object.clone())
}

/// Creates or updates an object as `manager`: `mutate` edits the current object (or a
/// fresh skeleton); the main resource is written if it changed, then the status if
/// that changed. Failures are logged: a controller retries on the next event.
pub fn upsert(
    state: &mut State,
    manager: &str,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    mutate: impl FnOnce(&mut Value),
) {
    let Some(k) = state.kinds.by_type(api_version, kind) else {
        return;
    };
    let current = state
        .store
        .get(&k, namespace, name)
        .map(|s| s.object.clone());
    let mut desired = current.clone().unwrap_or_else(|| {
        json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": name, "namespace": namespace } })
    });
    mutate(&mut desired);
    let opts = WriteOptions::new(manager);
    let main_changed = current
        .as_ref()
        .is_none_or(|c| strip_status(c) != strip_status(&desired));
    let mut written = current.clone();
    if main_changed {
        let result = match &current {
            None => state.create(&k, namespace, strip_status(&desired), &opts),
            Some(_) => state.replace(&k, namespace, name, strip_status(&desired), &opts),
        };
        match result {
            Ok(obj) => written = Some(obj),
            Err(e) => {
                tracing::warn!(%e, kind, namespace, name, manager, "emulated controller write failed");
                return;
            }
        }
    }
    let Some(mut written) = written else { return };
    if desired.get("status") != written.get("status") {
        written["status"] = desired.get("status").cloned().unwrap_or(Value::Null);
        let opts = WriteOptions {
            subresource: "status".into(),
            ..opts
        };
        if let Err(e) = state.replace(&k, namespace, name, written, &opts) {
            tracing::warn!(%e, kind, namespace, name, manager, "emulated controller status write failed");
        }
    }
}

fn strip_status(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("status");
    }
    copy
}

/// A controller owner reference to `owner`.
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The uid of the controller owner of `obj`, if any.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// Conditions list; keeps `lastTransitionTime` of conditions whose status did not change
/// so that a steady state does not rewrite the object.
pub fn conditions(previous: Option<&Value>, wanted: &[(&str, bool, &str, &str)]) -> Value {
    let old = previous
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Value::Array(
        wanted
            .iter()
            .map(|(kind, ok, reason, message)| {
                let status = if *ok { "True" } else { "False" };
                let time = old
                    .iter()
                    .find(|c| c["type"] == *kind && c["status"] == status)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now()));
                let mut c = json!({ "type": kind, "status": status, "lastTransitionTime": time });
                if !reason.is_empty() {
                    c["reason"] = json!(reason);
                }
                if !message.is_empty() {
                    c["message"] = json!(message);
                }
                c
            })
            .collect(),
    )
}
