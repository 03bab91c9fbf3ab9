//! This pod's side of the per-revision judgement: its summary (served on
//! `/guardrails/summary` and read by the judge) and the latest verdict (served on
//! `/guardrails`).

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde_json::Value;

use crate::{identity::Identity, judgement::step::PeerReport, window::Window};

/// Shared by the admin endpoints and the guardrail loop.
pub struct Local {
    pub instance: String,
    pub started_unix_ms: u64,
    pub identity: Identity,
    window: Arc<Window>,
    verdict: Mutex<Value>,
}

impl Local {
    pub fn new(identity: Identity, window: Arc<Window>) -> Self {
        let started_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            instance: uuid::Uuid::new_v4().to_string(),
            started_unix_ms,
            identity,
            window,
            verdict: Mutex::new(serde_json::json!({ "state": "not judging yet" })),
        }
    }

    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    /// Everything this process has seen, as a peer report.
    pub fn report(&self) -> PeerReport {
        PeerReport {
            instance: self.instance.clone(),
            pod: self.identity.pod.clone(),
            revision: self.identity.revision.clone(),
            started_unix_ms: self.started_unix_ms,
            summary: self.window.ledger(),
        }
    }

    pub fn publish(&self, verdict: Value) {
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = verdict;
    }

    pub fn verdict(&self) -> Value {
        self.verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
