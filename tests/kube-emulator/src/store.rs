//! Object storage with a cluster-wide resourceVersion and a bounded watch history,
//! standing in for etcd.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::fields::Ownership;
use crate::kinds::Kind;
use crate::meta::{meta_str, metadata_mut};

/// Watch history kept for resuming watches; older resourceVersions get 410 Gone.
const HISTORY: usize = 4096;

/// (resource key, namespace, name); namespace is "" for cluster-scoped kinds.
pub type ObjectKey = (String, String, String);

#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub owners: Ownership,
}

/// One change, as watchers see it.
#[derive(Debug)]
pub struct Change {
    pub resource: String,
    pub namespace: String,
    pub rv: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: &'static str,
    pub object: Value,
    /// The object before the change (for selector transitions).
    pub previous: Option<Value>,
}

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<ObjectKey, Stored>,
    history: VecDeque<Arc<Change>>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Default for Store {
    fn default() -> Self {
        let (changes, _) = broadcast::channel(HISTORY);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            changes,
        }
    }
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(&(kind.key(), scope(kind, namespace), name.to_string()))
    }

    /// Objects of a kind, in one namespace or (`None`) all, ordered by namespace then name.
    pub fn list(&self, kind: &Kind, namespace: Option<&str>) -> Vec<&Stored> {
        let key = kind.key();
        self.objects
            .iter()
            .filter(|((k, ns, _), _)| *k == key && namespace.is_none_or(|n| n == ns))
            .map(|(_, s)| s)
            .collect()
    }

    /// Writes an object (create or replace): bumps resourceVersion, renders managed
    /// fields, records the change. Returns the stored object.
    pub fn commit(&mut self, kind: &Kind, mut object: Value, owners: Ownership) -> Value {
        self.rv += 1;
        let meta = metadata_mut(&mut object);
        meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let rendered = owners.render();
        if rendered.as_array().is_some_and(|a| a.is_empty()) {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), rendered);
        }
        let key = (
            kind.key(),
            scope(kind, meta_str(&object, "namespace")),
            meta_str(&object, "name").to_string(),
        );
        let previous = self
            .objects
            .insert(
                key.clone(),
                Stored {
                    object: object.clone(),
                    owners,
                },
            )
            .map(|s| s.object);
        let event_type = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(Change {
            resource: key.0,
            namespace: key.1,
            rv: self.rv,
            event_type,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Deletes an object; returns it as it was last stored (with the deletion's resourceVersion).
    pub fn remove(&mut self, kind: &Kind, namespace: &str, name: &str) -> Option<Value> {
        let key = (kind.key(), scope(kind, namespace), name.to_string());
        let mut stored = self.objects.remove(&key)?;
        self.rv += 1;
        metadata_mut(&mut stored.object)
            .insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        self.record(Change {
            resource: key.0,
            namespace: key.1,
            rv: self.rv,
            event_type: "DELETED",
            object: stored.object.clone(),
            previous: None,
        });
        Some(stored.object)
    }

    /// Every stored object owned (via `ownerReferences`) by the given uid.
    pub fn owned_by(&self, uid: &str) -> Vec<ObjectKey> {
        self.objects
            .iter()
            .filter(|(_, s)| {
                s.object
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Changes after `rv` still in history, or `None` when `rv` is older than the history
    /// (the watch must get 410 Gone and relist).
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Arc<Change>>> {
        if let Some(oldest) = self.history.front() {
            if rv + 1 < oldest.rv {
                return None;
            }
        }
        Some(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }
}

fn scope(kind: &Kind, namespace: &str) -> String {
    if kind.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}
