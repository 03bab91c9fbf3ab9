//! The API server's write semantics, independent of HTTP: create, update, patch (merge,
//! JSON, strategic, server-side apply), delete with finalizers and owner cascade,
//! resourceVersion conflicts, generation, the status subresource, schema validation and
//! the controllers that run after each write.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::fields::{Ownership, Writer};
use crate::kinds::{Kind, Kinds};
use crate::meta::{meta_str, metadata_mut, random_suffix};
use crate::status::{ApiError, Cause};
use crate::store::Store;
use crate::{knative, kserve};

mod admission;
mod apply;
mod delete;

use admission::immutable_name;
use apply::strategic_merge;

/// How a write was asked for.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Field manager (`?fieldManager=`, else derived from the user agent).
    pub manager: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    /// `?dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `?fieldValidation=Strict`: unknown fields are an error instead of being pruned.
    pub strict: bool,
}

impl WriteOptions {
    pub fn new(manager: &str) -> Self {
        Self {
            manager: manager.to_string(),
            subresource: String::new(),
            dry_run: false,
            strict: false,
        }
    }
}

/// A PATCH body, by content type.
#[derive(Debug, Clone)]
pub enum Patch {
    Merge(Value),
    /// Treated as a merge patch that merges keyed lists (`webhooks`, `containers`) by key.
    Strategic(Value),
    Json(Value),
    Apply {
        config: Value,
        force: bool,
    },
}

/// Emulated cluster state behind the server's lock.
#[derive(Debug)]
pub struct State {
    pub kinds: Arc<Kinds>,
    pub store: Store,
    /// Set while controllers run, so their own writes do not recurse into them.
    reconciling: bool,
    /// Pods controllers want (a new Revision's), created through admission by the
    /// emulator's pod creator.
    pub pending_pods: Vec<Value>,
    /// Whether new Revisions get a Pod (`Options::revision_pods`).
    pub revision_pods: bool,
}

impl State {
    pub fn new(kinds: Arc<Kinds>, namespaces: &[String]) -> Self {
        let mut state = Self {
            kinds,
            store: Store::default(),
            reconciling: false,
            pending_pods: Vec::new(),
            revision_pods: false,
        };
        for ns in namespaces {
            state.ensure_namespace(ns);
        }
        state
    }

    pub fn ensure_namespace(&mut self, name: &str) {
        let Some(kind) = self.kinds.by_type("v1", "Namespace") else {
            return;
        };
        if self.store.get(&kind, "", name).is_none() {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            let _ = self.write(
                &kind,
                "",
                None,
                ns,
                &WriteOptions::new("kube-emulator"),
                Ownership::default(),
            );
        }
    }

    /// 404 for a namespaced request into a namespace that does not exist.
    pub fn check_namespace(&self, kind: &Kind, namespace: &str) -> Result<(), ApiError> {
        if !kind.namespaced || namespace.is_empty() {
            return Ok(());
        }
        let exists = self
            .kinds
            .by_type("v1", "Namespace")
            .is_some_and(|k| self.store.get(&k, "", namespace).is_some());
        if exists {
            Ok(())
        } else {
            Err(ApiError::not_found("", "namespaces", namespace))
        }
    }

    pub fn read(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.check_namespace(kind, namespace)?;
        self.store
            .get(kind, namespace, name)
            .map(|s| s.object.clone())
            .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, name))
    }

    pub fn create(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_namespace(kind, namespace)?;
        check_body_namespace(kind, namespace, &obj)?;
        let meta = metadata_mut(&mut obj);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", random_suffix());
                    meta.insert("name".into(), Value::String(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        kind.group,
                        kind.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ))
                }
            }
        }
        let name = meta_str(&obj, "name").to_string();
        if self.store.get(kind, namespace, &name).is_some() {
            return Err(ApiError::already_exists(kind.group, kind.plural, &name));
        }
        let mut owners = Ownership::default();
        owners.record_update(None, &obj, &writer(kind, opts));
        self.write(kind, namespace, None, obj, opts, owners)
    }

    /// PUT: full replacement, optimistic concurrency on `metadata.resourceVersion`.
    pub fn replace(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_namespace(kind, namespace)?;
        check_body_namespace(kind, namespace, &obj)?;
        let stored = self
            .store
            .get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, name))?;
        let body_name = meta_str(&obj, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let rv = meta_str(&obj, "resourceVersion");
        if rv.is_empty() && !kind.unconditional_update {
            return Err(ApiError::invalid(
                kind.group,
                kind.kind,
                name,
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                    field: "metadata.resourceVersion".into(),
                }],
            ));
        }
        if !rv.is_empty() && rv != meta_str(&stored.object, "resourceVersion") {
            return Err(ApiError::conflict(kind.group, kind.plural, name));
        }
        let mut owners = stored.owners.clone();
        owners.record_update(Some(&stored.object), &obj, &writer(kind, opts));
        self.write(kind, namespace, Some(&stored.object), obj, opts, owners)
    }

    pub fn patch(
        &mut self,
        kind: &Arc<Kind>,
        namespace: &str,
        name: &str,
        patch: Patch,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_namespace(kind, namespace)?;
        let stored = self.store.get(kind, namespace, name).cloned();
        let found = || {
            stored
                .clone()
                .ok_or_else(|| ApiError::not_found(kind.group, kind.plural, name))
        };
        let (stored, obj) = match patch {
            Patch::Apply { config, force } => {
                return self.apply(kind, namespace, name, config, force, stored, opts);
            }
            Patch::Merge(p) => {
                let stored = found()?;
                let mut obj = stored.object.clone();
                json_patch::merge(&mut obj, &p);
                (stored, obj)
            }
            Patch::Strategic(p) => {
                let stored = found()?;
                let mut obj = stored.object.clone();
                strategic_merge(&mut obj, &p, "");
                (stored, obj)
            }
            Patch::Json(p) => {
                let stored = found()?;
                let mut obj = stored.object.clone();
                let ops: json_patch::Patch = serde_json::from_value(p)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut obj, &ops).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
                (stored, obj)
            }
        };
        let rv = meta_str(&obj, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&stored.object, "resourceVersion") {
            return Err(ApiError::conflict(kind.group, kind.plural, name));
        }
        if meta_str(&obj, "name") != name {
            return Err(immutable_name(kind, name));
        }
        let mut owners = stored.owners.clone();
        owners.record_update(Some(&stored.object), &obj, &writer(kind, opts));
        self.write(kind, namespace, Some(&stored.object), obj, opts, owners)
    }

    /// Create-or-replace without concurrency checks, status included: test seeding.
    pub fn seed(&mut self, mut obj: Value) -> Result<Value, ApiError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let type_kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = self
            .kinds
            .by_type(&api_version, &type_kind)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "kube-emulator does not serve apiVersion {api_version:?} kind {type_kind:?}"
                ))
            })?;
        let namespace = if kind.namespaced {
            let ns = meta_str(&obj, "namespace");
            let ns = if ns.is_empty() { "default" } else { ns }.to_string();
            self.ensure_namespace(&ns);
            metadata_mut(&mut obj).insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            String::new()
        };
        let name = meta_str(&obj, "name").to_string();
        let status = obj.get("status").cloned();
        let opts = WriteOptions::new("kube-emulator");
        // Seeding overwrites: take whatever resourceVersion is current.
        let current_rv = self
            .store
            .get(&kind, &namespace, &name)
            .map(|s| meta_str(&s.object, "resourceVersion").to_string());
        let written = match current_rv {
            Some(rv) => {
                metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv));
                self.replace(&kind, &namespace, &name, obj, &opts)?
            }
            None => {
                metadata_mut(&mut obj).remove("resourceVersion");
                self.create(&kind, &namespace, obj, &opts)?
            }
        };
        match (status, kind.status_subresource) {
            (Some(status), true) => {
                // Controllers may have written since: seed status onto the current object.
                let mut with_status = self
                    .store
                    .get(&kind, &namespace, &name)
                    .map(|s| s.object.clone())
                    .unwrap_or(written);
                with_status["status"] = status;
                let opts = WriteOptions {
                    subresource: "status".into(),
                    ..opts
                };
                self.replace(&kind, &namespace, &name, with_status, &opts)
            }
            _ => Ok(written),
        }
    }

    /// Runs the Knative and KServe controllers over a namespace until nothing changes.
    pub fn reconcile(&mut self, namespace: &str) {
        self.reconciling = true;
        let mut settled = false;
        for _ in 0..8 {
            let before = self.store.resource_version();
            kserve::reconcile(self, namespace);
            knative::reconcile(self, namespace);
            if self.store.resource_version() == before {
                settled = true;
                break;
            }
        }
        self.reconciling = false;
        if !settled {
            tracing::warn!(namespace, "controllers did not settle after 8 passes");
        }
    }
}

pub(crate) fn writer<'a>(kind: &'a Kind, opts: &'a WriteOptions) -> Writer<'a> {
    Writer {
        manager: &opts.manager,
        subresource: &opts.subresource,
        api_version: kind.api_version(),
        status_separate: kind.status_subresource,
    }
}

pub(crate) fn check_body_namespace(
    kind: &Kind,
    namespace: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace");
    if kind.namespaced && !body_ns.is_empty() && body_ns != namespace {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({namespace})"
        )));
    }
    Ok(())
}
