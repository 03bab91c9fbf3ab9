//! DELETE: preconditions, finalizers, namespace contents and owner-reference cascade.

use std::sync::Arc;

use serde_json::Value;

use super::State;
use crate::kinds::Kind;
use crate::meta::{meta_str, metadata_mut, now};
use crate::status::{qualified, ApiError};

impl State {
    /// DELETE: honours `preconditions`, finalizers (sets `deletionTimestamp`) and cascades
    /// to objects whose `ownerReferences` point at the deleted one.
    pub fn delete(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.check_namespace(kind, namespace)?;
        let stored = self
            .store
            .get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, name))?;
        for (field, actual) in [
            (
                "resourceVersion",
                meta_str(&stored.object, "resourceVersion"),
            ),
            ("uid", meta_str(&stored.object, "uid")),
        ] {
            if let Some(expected) = options
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
            {
                if expected != actual {
                    return Err(ApiError::new(409, "Conflict", format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {field}: {expected}, {field} in object meta: {actual}",
                        qualified(kind.plural, kind.group)
                    )));
                }
            }
        }
        if dry_run {
            return Ok(stored.object);
        }
        let has_finalizers = stored
            .object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers && kind.kind != "Namespace" {
            let mut obj = stored.object.clone();
            metadata_mut(&mut obj)
                .entry("deletionTimestamp")
                .or_insert_with(|| Value::String(now()));
            return Ok(self.store.commit(kind, obj, stored.owners));
        }
        self.remove_cascading(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, name))
    }

    pub(super) fn remove_cascading(
        &mut self,
        kind: &Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let removed = self.store.remove(kind, namespace, name)?;
        if kind.kind == "Namespace" {
            for k in self.kinds.all.clone().iter().filter(|k| k.namespaced) {
                let names: Vec<String> = self
                    .store
                    .list(k, Some(name))
                    .iter()
                    .map(|s| meta_str(&s.object, "name").to_string())
                    .collect();
                for n in names {
                    self.store.remove(k, name, &n);
                }
            }
        }
        let uid = meta_str(&removed, "uid").to_string();
        for (resource, ns, child) in self.store.owned_by(&uid) {
            if let Some(k) = self.kinds.all.iter().find(|k| k.key() == resource).cloned() {
                self.remove_cascading(&k, &ns, &child);
            }
        }
        Some(removed)
    }
}
