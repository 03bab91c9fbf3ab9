//! The per-emulator audit log: every request, as tests assert on it.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One request the emulator received.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`), or the lowercase HTTP method for non-resource paths.
    pub verb: String,
    /// Request path without the query.
    pub path: String,
    pub query: String,
    /// `Content-Type` header ("" when absent); tells the patch type apart.
    pub content_type: String,
    pub body: String,
    /// Response status code (0 when the connection was reset on purpose).
    pub code: u16,
    pub user_agent: String,
    /// Field manager of writes (`?fieldManager=`), "" otherwise.
    pub field_manager: String,
    pub time: SystemTime,
}

impl AuditEntry {
    /// The body parsed as JSON (YAML for server-side apply), if it parses.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body)
            .ok()
            .or_else(|| serde_saphyr::from_str(&self.body).ok())
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditLog(Arc<Mutex<Vec<AuditEntry>>>);

impl AuditLog {
    pub fn push(&self, entry: AuditEntry) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    pub fn entries(&self) -> Vec<AuditEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
