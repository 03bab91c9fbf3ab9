//! Server-side apply bookkeeping: which field manager owns which fields, conflicts, and
//! the `metadata.managedFields` rendering (`FieldsV1`).
//!
//! Granularity follows the structured-merge rules for the fields we write: maps are
//! granular (each annotation or label is its own field), lists are atomic (a manager owns
//! `spec.traffic` as a whole) except the keyed lists in [`LIST_KEYS`]
//! (`webhooks[name=...]`, so one manager can own a single webhook's `caBundle`).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::status::Cause;

mod paths;

pub use paths::merge_into;
use paths::{fields_of, remove_at, render_path, value_at};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Field(String),
    /// A keyed list element: (key field, key value).
    Key(String, String),
}

pub type FieldPath = Vec<Seg>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

#[derive(Debug, Clone)]
struct ManagerEntry {
    manager: String,
    operation: Operation,
    subresource: String,
    api_version: String,
    time: String,
    fields: BTreeSet<FieldPath>,
}

/// Field ownership of one object.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    entries: Vec<ManagerEntry>,
}

/// One apply conflict: another manager owns `field` with a different value.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

impl Conflict {
    pub fn cause(&self) -> Cause {
        Cause {
            reason: "FieldManagerConflict".into(),
            message: format!(
                "conflict with \"{}\" using {}",
                self.manager, self.api_version
            ),
            field: self.field.clone(),
        }
    }
}

/// What a write is doing, for ownership.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: &'a str,
    pub api_version: String,
    /// Whether `status` is its own subresource for this kind.
    pub status_separate: bool,
}

impl Ownership {
    /// Records an update (PUT or non-apply PATCH): the writer takes every field it
    /// changed or added; removed fields are forgotten by everyone.
    pub fn record_update(&mut self, old: Option<&Value>, new: &Value, w: &Writer<'_>) {
        let new_fields = fields_of(new, w);
        let old_fields = old.map(|o| fields_of(o, w)).unwrap_or_default();
        let changed: BTreeSet<FieldPath> = new_fields
            .iter()
            .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
            .cloned()
            .collect();
        let removed: BTreeSet<FieldPath> = old_fields.difference(&new_fields).cloned().collect();
        for entry in &mut self.entries {
            if entry.subresource == w.subresource {
                entry.fields.retain(|f| {
                    !(removed.contains(f) || (changed.contains(f) && entry.manager != w.manager))
                });
            }
        }
        if !changed.is_empty() {
            self.entry_mut(w, Operation::Update).fields.extend(changed);
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Server-side apply of `applied` (already parsed) onto `current`. Returns the merged
    /// object, or the conflicts when `force` is false and another manager owns a field the
    /// configuration sets to a different value.
    pub fn apply(
        &mut self,
        current: &Value,
        applied: &Value,
        w: &Writer<'_>,
        force: bool,
    ) -> Result<Value, Vec<Conflict>> {
        let new_fields = fields_of(applied, w);
        let mut conflicts = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|e| e.subresource == w.subresource && e.manager != w.manager)
        {
            for path in entry.fields.intersection(&new_fields) {
                if value_at(current, path) != value_at(applied, path) {
                    conflicts.push(Conflict {
                        manager: entry.manager.clone(),
                        api_version: entry.api_version.clone(),
                        field: render_path(path),
                    });
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        let previous = self
            .entries
            .iter()
            .find(|e| {
                e.manager == w.manager
                    && e.operation == Operation::Apply
                    && e.subresource == w.subresource
            })
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut merged = current.clone();
        // Fields this manager applied before, no longer applies, and nobody else owns: removed.
        for path in previous.difference(&new_fields) {
            let shared = self
                .entries
                .iter()
                .any(|e| e.manager != w.manager && e.fields.contains(path));
            if !shared {
                remove_at(&mut merged, path);
            }
        }
        merge_into(&mut merged, applied, "");
        for entry in &mut self.entries {
            if entry.subresource == w.subresource && entry.manager != w.manager {
                // Forced fields change hands; equal values stay shared.
                entry.fields.retain(|f| {
                    !(new_fields.contains(f) && value_at(current, f) != value_at(applied, f))
                });
            }
        }
        self.entry_mut(w, Operation::Apply).fields = new_fields;
        self.entries.retain(|e| !e.fields.is_empty());
        Ok(merged)
    }

    /// Same managers owning the same fields (timestamps aside).
    pub fn same_as(&self, other: &Ownership) -> bool {
        let key = |o: &Ownership| -> Vec<(String, bool, String, BTreeSet<FieldPath>)> {
            let mut v: Vec<_> = o
                .entries
                .iter()
                .map(|e| {
                    (
                        e.manager.clone(),
                        e.operation == Operation::Apply,
                        e.subresource.clone(),
                        e.fields.clone(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        key(self) == key(other)
    }

    /// Forgets fields the stored object does not have (pruned unknown fields, or fields
    /// the admission removed).
    pub fn retain_present(&mut self, obj: &Value) {
        for entry in &mut self.entries {
            entry.fields.retain(|f| value_at(obj, f).is_some());
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    fn entry_mut(&mut self, w: &Writer<'_>, operation: Operation) -> &mut ManagerEntry {
        let time = crate::meta::now();
        let pos = self.entries.iter().position(|e| {
            e.manager == w.manager && e.operation == operation && e.subresource == w.subresource
        });
        let idx = match pos {
            Some(i) => i,
            None => {
                self.entries.push(ManagerEntry {
                    manager: w.manager.to_string(),
                    operation,
                    subresource: w.subresource.to_string(),
                    api_version: w.api_version.clone(),
                    time: time.clone(),
                    fields: BTreeSet::new(),
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[idx];
        entry.time = time;
        entry
    }

    /// `metadata.managedFields` in the API server's `FieldsV1` format.
    pub fn render(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|e| {
                    let mut tree = Value::Object(Map::new());
                    for path in &e.fields {
                        let mut node = &mut tree;
                        for seg in path {
                            let key = match seg {
                                Seg::Field(f) => format!("f:{f}"),
                                Seg::Key(k, v) => format!("k:{}", json!({ k: v })),
                            };
                            node = node
                                .as_object_mut()
                                .map(|m| m.entry(key).or_insert_with(|| Value::Object(Map::new())))
                                .expect("FieldsV1 nodes are always objects");
                            if matches!(seg, Seg::Key(..)) {
                                node["."] = json!({});
                            }
                        }
                    }
                    let mut out = json!({
                        "manager": e.manager,
                        "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                        "apiVersion": e.api_version,
                        "time": e.time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": tree,
                    });
                    if !e.subresource.is_empty() {
                        out["subresource"] = json!(e.subresource);
                    }
                    out
                })
                .collect(),
        )
    }
}
