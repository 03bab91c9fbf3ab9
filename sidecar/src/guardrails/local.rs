//! This pod's side of the per-revision judgement: its summary (served on
//! `/guardrails/summary` and read by the judge) and the latest verdict (served on
//! `/guardrails`).

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use serde_json::{json, Value};

use crate::{
    guardrails::records,
    identity::Identity,
    judgement::{step::PeerReport, Judgement},
    window::Window,
};

/// What `/guardrails` shows of the judgement: kept typed, rendered when asked (the
/// loop publishes on every evaluation, the endpoint is read rarely).
#[derive(Debug, Clone)]
pub enum Published {
    NotJudging {
        why: String,
    },
    Judged {
        judgement: Judgement,
        notes: Vec<String>,
        step_started: SystemTime,
    },
}

/// Shared by the admin endpoints and the guardrail loop.
pub struct Local {
    pub instance: String,
    pub started_unix_ms: u64,
    pub identity: Identity,
    window: Arc<Window>,
    verdict: Mutex<Shown>,
}

/// The current state, and the last judgement while not judging (after a rollback the
/// revision is idle, and `/guardrails` should still say why).
struct Shown {
    current: Published,
    last_judged: Option<Published>,
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
            verdict: Mutex::new(Shown {
                current: Published::NotJudging {
                    why: "not judged yet".into(),
                },
                last_judged: None,
            }),
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

    pub fn publish(&self, verdict: Published) {
        let mut shown = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut shown.current, verdict);
        if matches!(previous, Published::Judged { .. }) {
            shown.last_judged = Some(previous);
        }
    }

    /// The latest verdict as `/guardrails` serves it.
    pub fn verdict(&self) -> Value {
        let (current, last) = {
            let shown = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
            (shown.current.clone(), shown.last_judged.clone())
        };
        let not_judging = matches!(current, Published::NotJudging { .. });
        let mut shown = self.render(current);
        if let (true, Some(last)) = (not_judging, last) {
            shown["lastJudgement"] = self.render(last);
        }
        shown
    }

    fn render(&self, published: Published) -> Value {
        match published {
            Published::NotJudging { why } => json!({ "state": "not judging", "why": why }),
            Published::Judged {
                judgement,
                notes,
                step_started,
            } => json!({
                "state": judgement.state.as_str(),
                "revision": self.identity.revision,
                "stepStarted": records::rfc3339(step_started),
                "summary": judgement.describe(),
                "findings": judgement.findings,
                "notes": notes,
            }),
        }
    }
}
