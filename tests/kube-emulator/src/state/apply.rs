//! Server-side apply (`application/apply-patch+yaml`) and the strategic merge used for
//! `application/strategic-merge-patch+json`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{check_body_namespace, writer, State, WriteOptions};
use crate::fields::Ownership;
use crate::kinds::Kind;
use crate::meta::meta_str;
use crate::status::ApiError;
use crate::store::Stored;

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        name: &str,
        config: Value,
        force: bool,
        stored: Option<Stored>,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let api_version = config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let type_kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != kind.api_version() || type_kind != kind.kind {
            return Err(ApiError::bad_request(format!(
                "the apply configuration must have apiVersion {:?} and kind {:?} (got {api_version:?}, {type_kind:?})",
                kind.api_version(),
                kind.kind
            )));
        }
        if meta_str(&config, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&config, "name")
            )));
        }
        check_body_namespace(kind, namespace, &config)?;
        let w = writer(kind, opts);
        let (current, mut owners) = match &stored {
            Some(s) => (s.object.clone(), s.owners.clone()),
            None => (json!({}), Ownership::default()),
        };
        let rv = meta_str(&config, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&current, "resourceVersion") {
            return Err(ApiError::conflict(kind.group, kind.plural, name));
        }
        let merged = owners
            .apply(&current, &config, &w, force)
            .map_err(|conflicts| {
                let n = conflicts.len();
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|c| {
                        format!(
                            "conflict with \"{}\" using {}: {}",
                            c.manager, c.api_version, c.field
                        )
                    })
                    .collect();
                let mut err = ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {n} conflict{}: {}",
                        if n == 1 { "" } else { "s" },
                        list.join("\n")
                    ),
                );
                err.details = Some(Box::new((
                    kind.group.to_string(),
                    kind.plural.to_string(),
                    name.to_string(),
                )));
                err.causes = conflicts.iter().map(|c| c.cause()).collect();
                err
            })?;
        self.write(
            kind,
            namespace,
            stored.as_ref().map(|s| &s.object),
            merged,
            opts,
            owners,
        )
    }
}

/// Strategic merge for the kinds we serve: a merge patch whose keyed lists merge by key.
pub(super) fn strategic_merge(target: &mut Value, patch: &Value, name: &str) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    strategic_merge(existing, v, k);
                } else {
                    let mut fresh = Value::Null;
                    strategic_merge(&mut fresh, v, k);
                    t.insert(k.clone(), fresh);
                }
            }
        }
        (t @ Value::Array(_), Value::Array(_)) => crate::fields::merge_into(t, patch, name),
        (t, p) => {
            if let Value::Object(_) = p {
                *t = Value::Object(Default::default());
                strategic_merge(t, p, name);
            } else {
                *t = p.clone();
            }
        }
    }
}
