//! Admission of a write: defaults, status handling, identity and generation, schema
//! pruning and validation, Knative/KServe webhook rules; then commit and controllers.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{State, WriteOptions};
use crate::fields::Ownership;
use crate::kinds::Kind;
use crate::meta::{meta_str, metadata_mut, now, spec_part};
use crate::status::{ApiError, Cause};
use crate::{knative, kserve};

impl State {
    /// Admission (defaults, status handling, generation, schema, domain rules), then commit
    /// and run controllers. Skips the commit when nothing changed, like the API server.
    pub(super) fn write(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        old: Option<&Value>,
        mut obj: Value,
        opts: &WriteOptions,
        mut owners: Ownership,
    ) -> Result<Value, ApiError> {
        // A patch can replace the whole document; the result must still be an object
        // with object metadata.
        if !obj.is_object() || obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: the object and its metadata must be JSON objects",
                kind.kind, kind.version, kind.kind
            )));
        }
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind);
        if kind.status_subresource {
            let keep_from_old = opts.subresource != "status";
            let base = if keep_from_old {
                old.and_then(|o| o.get("status")).cloned()
            } else {
                obj.get("status").cloned()
            };
            if !keep_from_old {
                // A status write changes status only.
                if let Some(old) = old {
                    let rv = obj.pointer("/metadata/resourceVersion").cloned();
                    obj = old.clone();
                    if let Some(rv) = rv {
                        metadata_mut(&mut obj).insert("resourceVersion".into(), rv);
                    }
                }
            }
            match (base, obj.as_object_mut()) {
                (Some(status), Some(m)) => {
                    m.insert("status".into(), status);
                }
                (None, Some(m)) => {
                    m.remove("status");
                }
                _ => {}
            }
        }
        let name = meta_str(&obj, "name").to_string();
        check_metadata(kind, &name, &obj)?;
        if kind.kind == "Secret" {
            fold_string_data(&mut obj, &name)?;
        }
        let meta = metadata_mut(&mut obj);
        meta.remove("managedFields");
        if kind.namespaced {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
        } else {
            meta.remove("namespace");
        }
        match old {
            Some(old) => {
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "generation",
                ] {
                    match old.pointer(&format!("/metadata/{field}")) {
                        Some(v) => meta.insert(field.into(), v.clone()),
                        None => meta.remove(field),
                    };
                }
            }
            None => {
                meta.insert(
                    "uid".into(),
                    Value::String(uuid::Uuid::new_v4().to_string()),
                );
                meta.insert("creationTimestamp".into(), Value::String(now()));
                meta.remove("deletionTimestamp");
                meta.remove("generation");
            }
        }
        if kind.generation {
            let previous = old
                .and_then(|o| o.pointer("/metadata/generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let changed = old.is_none_or(|o| spec_part(o) != spec_part(&obj));
            let generation = if changed { previous + 1 } else { previous };
            metadata_mut(&mut obj).insert("generation".into(), json!(generation));
        }
        knative::default(kind, &mut obj);
        if let Some(schema) = &kind.schema {
            let pruned = schema.prune(&mut obj);
            if opts.strict && !pruned.is_empty() {
                let fields: Vec<String> = pruned
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    kind.kind,
                    kind.version,
                    kind.kind,
                    fields.join(", ")
                )));
            }
            let causes = schema.validate(&obj);
            if !causes.is_empty() {
                return Err(ApiError::invalid(kind.group, kind.kind, &name, causes));
            }
        }
        let causes = crate::builtin::validate(kind, &obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(kind.group, kind.kind, &name, causes));
        }
        let mut causes = knative::validate(kind, &obj);
        causes.extend(kserve::validate(kind, &obj));
        if !causes.is_empty() {
            let mut err = ApiError::invalid(kind.group, kind.kind, &name, causes);
            err.message = format!("admission webhook \"validation.webhook.{}\" denied the request: validation failed: {}", kind.group, err.message);
            return Err(err);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        owners.retain_present(&obj);
        if let Some(old) = old {
            let same_owners = self
                .store
                .get(kind, namespace, &name)
                .is_some_and(|s| s.owners.same_as(&owners));
            if same_owners && without_volatile(old) == without_volatile(&obj) {
                // No-op write: the API server keeps the resourceVersion.
                return Ok(old.clone());
            }
            let finalizing = obj.pointer("/metadata/deletionTimestamp").is_some()
                && obj
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(|f| f.is_empty());
            if finalizing {
                return self
                    .remove_cascading(kind, namespace, &name)
                    .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, &name));
            }
        }
        let written = self.store.commit(kind, obj, owners);
        if !self.reconciling && (kind.group == knative::GROUP || kind.group == kserve::GROUP) {
            self.reconcile(namespace);
        }
        Ok(written)
    }
}

fn check_metadata(kind: &Kind, name: &str, obj: &Value) -> Result<(), ApiError> {
    for field in ["labels", "annotations"] {
        let value = obj.pointer(&format!("/metadata/{field}"));
        if value.is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: metadata.{field}: expected a map of strings",
                kind.kind, kind.version, kind.kind
            )));
        }
        if let Some(map) = value.and_then(Value::as_object) {
            if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: metadata.{field}.{k}: expected a string, got {v}",
                    kind.kind, kind.version, kind.kind
                )));
            }
        }
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(ApiError::invalid(kind.group, kind.kind, name, vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            field: "metadata.name".into(),
        }]));
    }
    Ok(())
}

/// Secrets: `stringData` is folded into base64 `data`, and `data` must be base64.
fn fold_string_data(obj: &mut Value, name: &str) -> Result<(), ApiError> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    for field in ["data", "stringData"] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: {field} of secret {name:?} must be a map of strings"
            )));
        }
    }
    if let Some(Value::Object(string_data)) =
        obj.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default().to_string();
            obj["data"][k] = Value::String(engine.encode(text));
        }
    }
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let ok = v.as_str().is_some_and(|s| engine.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{k} of secret {name:?}"
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn immutable_name(kind: &Kind, name: &str) -> ApiError {
    ApiError::invalid(
        kind.group,
        kind.kind,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: field is immutable".into(),
            field: "metadata.name".into(),
        }],
    )
}

fn without_volatile(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    copy
}
