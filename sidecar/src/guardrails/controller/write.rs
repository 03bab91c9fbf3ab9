//! The write path of the loop: compute from the freshest view, send conditionally,
//! and handle 409 (re-read, recompute), transient failures (backoff with jitter) and
//! 403 (report, pause).

use std::time::SystemTime;

use rand::Rng as _;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::{Controller, Outcome};
use crate::guardrails::{
    api::{ApiError, Cluster},
    knative::TrafficError,
    view::{Action, View, Write},
};

impl<A: Cluster> Controller<A> {
    /// Computes a write from the freshest view and sends it: 409 → re-read and
    /// recompute (at most `max_conflicts` times); 5xx/timeouts/resets → retry with
    /// jittered exponential backoff until done or shutdown; 403 → stop and pause.
    pub(super) async fn act<F>(
        &mut self,
        kind: &'static str,
        shutdown: &CancellationToken,
        plan: F,
    ) -> Outcome
    where
        F: Fn(&View, SystemTime) -> Result<Option<Write>, TrafficError>,
    {
        let outcome = self.act_inner(shutdown, plan).await;
        self.metrics.action(kind, outcome.label());
        outcome
    }

    async fn act_inner<F>(&mut self, shutdown: &CancellationToken, plan: F) -> Outcome
    where
        F: Fn(&View, SystemTime) -> Result<Option<Write>, TrafficError>,
    {
        let mut conflicts = 0;
        let mut attempt = 0u32;
        // A fresh cached view saves a read; a stale one ends in a 409 and a re-read.
        let (mut view, mut fresh) = match self.view.as_ref().filter(|_| !self.stale()) {
            Some(r) => (r.view.clone(), false),
            None => match self.read(shutdown).await {
                Some(v) => (v, true),
                None => return Outcome::Stopped,
            },
        };
        loop {
            let write = match plan(&view, SystemTime::now()) {
                Ok(Some(w)) => w,
                Ok(None) => {
                    if fresh {
                        self.set_view(view);
                    }
                    return Outcome::Nothing;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compute the traffic change");
                    return Outcome::Stopped;
                }
            };
            if self.config.dry_run {
                let key = write.action.key();
                if !self.dry_run_logged.contains(&key) {
                    tracing::warn!(
                        target_kind = write.subject.as_str(),
                        name = %write.name,
                        patch = %write.patch,
                        "dry run: would send this merge patch"
                    );
                    self.dry_run_logged.push(key);
                }
                return Outcome::DryRun;
            }
            match self
                .api
                .patch(write.subject, &write.name, &write.patch)
                .await
            {
                Ok(written) => {
                    self.after_write(&write, &view, written).await;
                    return Outcome::Written;
                }
                Err(e) => {
                    self.metrics.api_error(e.reason());
                    match e {
                        ApiError::Conflict(_) => {
                            conflicts += 1;
                            if conflicts > self.config.max_conflicts {
                                tracing::warn!(conflicts, "giving up after repeated conflicts; the next evaluation retries");
                                return Outcome::Stopped;
                            }
                            tracing::debug!("conflict: re-reading and recomputing");
                        }
                        ApiError::Transient(_) => {
                            tracing::warn!(error = %e, attempt, "API call failed: retrying");
                            if !self.backoff(&mut attempt, shutdown).await {
                                return Outcome::Stopped;
                            }
                        }
                        ApiError::Forbidden(_) => {
                            tracing::error!(error = %e, action = ?write.action, "not allowed to write; traffic unchanged, still serving");
                            self.forbidden_event(&write, &view, &e).await;
                            self.pause();
                            return Outcome::Stopped;
                        }
                        ApiError::NotFound(_) | ApiError::Rejected { .. } => {
                            tracing::error!(error = %e, patch = %write.patch, "write refused");
                            return Outcome::Stopped;
                        }
                    }
                }
            }
            view = match self.read(shutdown).await {
                Some(v) => v,
                None => return Outcome::Stopped,
            };
            fresh = true;
        }
    }

    /// Reads the view, retrying transient failures; `None` on 403/404 or shutdown.
    async fn read(&mut self, shutdown: &CancellationToken) -> Option<View> {
        let mut attempt = 0u32;
        loop {
            match self.api.view(&self.identity.service).await {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.metrics.api_error(e.reason());
                    match e {
                        ApiError::Transient(_) | ApiError::Conflict(_) => {
                            tracing::warn!(error = %e, attempt, "cannot read the Service: retrying");
                            if !self.backoff(&mut attempt, shutdown).await {
                                return None;
                            }
                        }
                        _ => {
                            tracing::error!(error = %e, service = %self.identity.service, "cannot read the Service");
                            if matches!(e, ApiError::Forbidden(_)) {
                                self.pause();
                            }
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Sleeps `base × 2^attempt` capped at `backoff_max`, with full jitter; `false`
    /// when shutdown came first.
    async fn backoff(&self, attempt: &mut u32, shutdown: &CancellationToken) -> bool {
        let cap = self
            .config
            .backoff_base
            .saturating_mul(1u32 << (*attempt).min(16))
            .min(self.config.backoff_max);
        *attempt += 1;
        let delay = cap.mul_f64(rand::rng().random_range(0.5..=1.0));
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = sleep(delay) => true,
        }
    }

    pub(super) fn pause(&mut self) {
        self.paused_until = Some(Instant::now() + self.config.forbidden_pause);
    }

    async fn after_write(&mut self, write: &Write, before: &View, written: serde_json::Value) {
        tracing::info!(action = ?write.action, name = %write.name, "write accepted");
        let mut view = before.clone();
        match &mut view.isvc {
            Some(i) => *i = written.clone(),
            None => view.service = written.clone(),
        }
        self.set_view(view);
        let (reason, note) = write.action.event(write.subject);
        let warning = matches!(write.action, Action::Rollback { .. });
        if let Err(e) = self
            .api
            .event(write.subject, &written, warning, reason, note)
            .await
        {
            self.metrics.api_error(e.reason());
            tracing::warn!(error = %e, "cannot record the Event (the annotations tell the story)");
        }
    }

    async fn forbidden_event(&self, write: &Write, view: &View, error: &ApiError) {
        let (_, obj) = view.subject();
        let note = format!(
            "guardrail-sidecar of revision {} could not apply {}: {error}",
            self.identity.revision,
            write.action.kind()
        );
        if let Err(e) = self
            .api
            .event(write.subject, obj, true, "GuardrailForbidden", note)
            .await
        {
            tracing::warn!(error = %e, "cannot record the Event either");
        }
    }
}
