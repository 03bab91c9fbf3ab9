//! CRD structural schemas: the `openAPIV3Schema` of a CRD, pruned and validated the way
//! the API server does it (unknown fields pruned, or rejected under
//! `fieldValidation=Strict`; then the remaining object validated).
//!
//! Kubernetes' OpenAPI dialect is converted once into a JSON Schema the `jsonschema` crate
//! accepts: `nullable` becomes a `null` type, `x-kubernetes-int-or-string` an `anyOf`,
//! `format` is dropped (the API server only checks a few formats), CEL rules
//! (`x-kubernetes-validations`) are not evaluated.

use serde_json::{json, Map, Value};

use crate::status::Cause;
use crate::Error;

/// A compiled CRD schema for the storage version.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    /// The original `openAPIV3Schema`, used for pruning.
    raw: Value,
    validator: jsonschema::Validator,
    /// `additionalPrinterColumns` (name, type, jsonPath), for `kubectl get` tables.
    pub printer_columns: Vec<Value>,
}

impl CrdSchema {
    /// Reads a `CustomResourceDefinition` manifest and compiles its storage version's schema.
    pub fn from_crd_yaml(text: &str) -> Result<Self, Error> {
        let crd: Value = serde_saphyr::from_str(text)
            .map_err(|e| Error::Schema(format!("CRD YAML does not parse: {e}")))?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let version = versions
            .iter()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .or_else(|| versions.first())
            .ok_or_else(|| Error::Schema(format!("CRD {name}: spec.versions is empty")))?;
        let raw = version
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .ok_or_else(|| {
                Error::Schema(format!(
                    "CRD {name}: spec.versions[].schema.openAPIV3Schema is missing"
                ))
            })?;
        let mut schema =
            Self::from_openapi(raw).map_err(|e| Error::Schema(format!("CRD {name}: {e}")))?;
        schema.printer_columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(schema)
    }

    /// Compiles an `openAPIV3Schema` value.
    pub fn from_openapi(raw: Value) -> Result<Self, String> {
        let converted = to_json_schema(&raw);
        let validator = jsonschema::validator_for(&converted)
            .map_err(|e| format!("schema does not compile: {e}"))?;
        Ok(Self {
            raw,
            validator,
            printer_columns: Vec::new(),
        })
    }

    /// Removes fields the schema does not know (as the API server's pruning does) and
    /// returns their paths. `apiVersion`, `kind` and `metadata` at the root are kept.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        if let Value::Object(map) = object {
            let props = self.raw.get("properties").and_then(Value::as_object);
            for (key, value) in map.iter_mut() {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(schema) = props.and_then(|p| p.get(key)) {
                    prune_value(value, schema, key, &mut pruned);
                }
            }
            let unknown: Vec<String> = map
                .keys()
                .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                .filter(|k| props.is_none_or(|p| !p.contains_key(*k)))
                .cloned()
                .collect();
            for key in unknown {
                map.remove(&key);
                pruned.push(key);
            }
        }
        pruned
    }

    /// Validates a (pruned) object; one cause per violation.
    pub fn validate(&self, object: &Value) -> Vec<Cause> {
        self.validator
            .iter_errors(object)
            .map(|err| {
                let mut field = pointer_to_field(err.instance_path().as_str());
                let reason = match err.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        let prop = property.as_str().unwrap_or_default();
                        field = if field.is_empty() {
                            prop.to_string()
                        } else {
                            format!("{field}.{prop}")
                        };
                        "FieldValueRequired"
                    }
                    jsonschema::error::ValidationErrorKind::Type { .. } => "FieldValueTypeInvalid",
                    jsonschema::error::ValidationErrorKind::Enum { .. } => "FieldValueNotSupported",
                    _ => "FieldValueInvalid",
                };
                Cause {
                    reason: reason.to_string(),
                    message: format!("Invalid value: {err}"),
                    field,
                }
            })
            .collect()
    }
}

fn prune_value(value: &mut Value, schema: &Value, path: &str, pruned: &mut Vec<String>) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut unknown = Vec::new();
            for (key, child) in map.iter_mut() {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = props.and_then(|p| p.get(key)) {
                    prune_value(child, child_schema, &child_path, pruned);
                } else if let Some(child_schema) = additional {
                    prune_value(child, child_schema, &child_path, pruned);
                } else if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    // Embedded resources always carry type and object metadata.
                } else if !preserve
                    && (props.is_some()
                        || schema.get("type").and_then(Value::as_str) == Some("object"))
                {
                    unknown.push(key.clone());
                }
            }
            for key in unknown {
                map.remove(&key);
                pruned.push(format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, item_schema, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

/// Converts Kubernetes' OpenAPI v3 dialect to plain JSON Schema.
fn to_json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let children = value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(children));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(key.clone(), to_json_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let children = value
                    .as_array()
                    .map(|a| a.iter().map(to_json_schema).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(children));
            }
            "nullable" | "format" | "description" | "example" | "externalDocs" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        out.remove("type");
        out.entry("anyOf")
            .or_insert_with(|| json!([{ "type": "integer" }, { "type": "string" }]));
    }
    if flag(schema, "nullable") {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
    }
    Value::Object(out)
}

/// `/spec/traffic/0/percent` → `spec.traffic[0].percent`.
pub fn pointer_to_field(pointer: &str) -> String {
    let mut field = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            field.push_str(&format!("[{seg}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&seg);
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> CrdSchema {
        CrdSchema::from_openapi(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["port"],
                    "properties": {
                        "port": { "x-kubernetes-int-or-string": true },
                        "note": { "type": "string", "nullable": true },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                        "items": { "type": "array", "items": { "type": "object", "properties": { "n": { "type": "integer", "format": "int64" } } } },
                    },
                },
            },
        }))
        .expect("compiles")
    }

    #[test]
    fn prunes_unknown_fields_except_where_preserved() {
        let mut obj = json!({ "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a", "anything": 1 }, "spec": {
            "port": 80, "bogus": true, "free": { "kept": 1 }, "labels": { "a": "b" }, "items": [{ "n": 1, "extra": 2 }],
        }, "top": 1 });
        let mut pruned = schema().prune(&mut obj);
        pruned.sort();
        assert_eq!(pruned, ["spec.bogus", "spec.items[0].extra", "top"]);
        assert_eq!(obj["spec"]["free"]["kept"], json!(1));
        assert_eq!(
            obj["metadata"]["anything"],
            json!(1),
            "metadata is not pruned by the CRD schema"
        );
    }

    #[test]
    fn kubernetes_extensions_validate_as_the_api_server_does() {
        let s = schema();
        for ok in [
            json!({ "port": 80 }),
            json!({ "port": "http", "note": null }),
        ] {
            assert!(s.validate(&json!({ "spec": ok })).is_empty(), "{ok}");
        }
        let causes = s.validate(
            &json!({ "spec": { "port": true, "labels": { "a": 1 }, "items": [{ "n": "x" }] } }),
        );
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.port")
                && fields.contains(&"spec.labels.a")
                && fields.contains(&"spec.items[0].n"),
            "{causes:?}"
        );
        let missing = s.validate(&json!({ "spec": {} }));
        assert_eq!(
            (missing[0].field.as_str(), missing[0].reason.as_str()),
            ("spec.port", "FieldValueRequired")
        );
    }
}
