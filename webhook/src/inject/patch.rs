//! JSON Patch operations on the object as received, relative to the pod's location
//! (`/spec/template` in a Deployment, the root in a Pod). Pointer tokens are escaped
//! by `jsonptr` (`/` → `~1`, `~` → `~0`), so annotation keys need no care.

use json_patch::{
    jsonptr::{PointerBuf, Token},
    AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation,
};
use serde_json::Value;

pub struct Ops {
    base: Vec<String>,
    ops: Vec<PatchOperation>,
}

impl Ops {
    pub fn new(base: &[&str]) -> Self {
        Self {
            base: base.iter().map(|s| s.to_string()).collect(),
            ops: Vec::new(),
        }
    }

    fn pointer(&self, path: &[&str]) -> PointerBuf {
        let tokens = self
            .base
            .iter()
            .map(String::as_str)
            .chain(path.iter().copied());
        PointerBuf::from_tokens(tokens.map(Token::new))
    }

    pub fn replace(&mut self, path: &[&str], value: Value) {
        let path = self.pointer(path);
        self.ops
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    pub fn add(&mut self, path: &[&str], value: Value) {
        let path = self.pointer(path);
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub fn remove(&mut self, path: &[&str]) {
        let path = self.pointer(path);
        self.ops
            .push(PatchOperation::Remove(RemoveOperation { path }));
    }

    /// Appends to the array at `path`, creating it when `current` (its value) is
    /// missing or null: `add …/-` fails on a missing parent.
    pub fn append(&mut self, path: &[&str], current: Option<&Value>, item: Value) {
        match current.filter(|v| v.is_array()) {
            Some(_) => self.add(&[path, &["-"]].concat(), item),
            None => self.add(path, Value::Array(vec![item])),
        }
    }

    /// Sets `name` in the `env` list of the container at `container` (a path): the
    /// entry's `value` when the variable exists (`add` on an object member creates or
    /// replaces it), a new entry otherwise.
    pub fn set_env(&mut self, container: &[&str], env: Option<&Value>, name: &str, value: String) {
        let list = env.and_then(Value::as_array);
        let found = list.and_then(|l| {
            l.iter()
                .position(|e| e.get("name").and_then(Value::as_str) == Some(name))
        });
        match (found, list) {
            (Some(i), Some(list)) => {
                let index = i.to_string();
                self.add(
                    &[container, &["env", &index, "value"]].concat(),
                    Value::String(value),
                );
                // `valueFrom` beside `value` is invalid.
                if list[i].get("valueFrom").is_some() {
                    self.remove(&[container, &["env", &index, "valueFrom"]].concat());
                }
            }
            _ => {
                let item = serde_json::json!({ "name": name, "value": value });
                self.append(&[container, &["env"]].concat(), env, item);
            }
        }
    }

    pub fn into_patch(self) -> Patch {
        Patch(self.ops)
    }
}
