//! The guardrail loop beside the data path: evaluate the window on every completed
//! request (at most every `minGap`) and every `interval`; on a breach of a canary
//! roll it back, and walk a healthy canary through its promotion steps.
//!
//! It only reads the window (a snapshot copies and releases each slot), so the proxy
//! never waits on it or on the API.

use std::{sync::Arc, time::SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    api::{ApiError, KubeApi},
    config::GuardrailsConfig,
    evaluate::{Evaluator, Verdict},
    knative::Role,
    metrics::GuardrailMetrics,
    promotion,
    records::Steps,
    rollback,
    thresholds::Rules,
    view::View,
};
use crate::{identity::Identity, window::Window};

mod write;

/// How a write attempt ended.
#[derive(Debug)]
enum Outcome {
    Written,
    DryRun,
    /// Nothing (left) to do: e.g. another replica already wrote it.
    Nothing,
    /// 403, bad traffic, too many conflicts, or shutdown: tried, not done.
    Stopped,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::DryRun => "dry_run",
            Self::Nothing => "nothing",
            Self::Stopped => "stopped",
        }
    }
}

/// The running guardrails of one revision.
pub struct Controller {
    config: GuardrailsConfig,
    identity: Identity,
    window: Arc<Window>,
    metrics: GuardrailMetrics,
    api: KubeApi,
    base: Rules,
    evaluator: Evaluator,
    view: Option<(View, Instant)>,
    refresh_failed_at: Option<Instant>,
    paused_until: Option<Instant>,
    /// Annotation problems already reported, so a bad value logs once.
    reported: Vec<String>,
    /// In dry-run, the actions already logged (the loop would repeat them forever).
    dry_run_logged: Vec<String>,
}

impl Controller {
    pub fn new(
        config: GuardrailsConfig,
        identity: Identity,
        window: Arc<Window>,
        metrics: GuardrailMetrics,
        api: KubeApi,
    ) -> Self {
        let base = Rules {
            thresholds: config.thresholds.clone(),
            min_requests: config.min_requests,
            consecutive_breaches: config.consecutive_breaches,
        };
        Self {
            evaluator: Evaluator::new(config.interval),
            config,
            identity,
            window,
            metrics,
            api,
            base,
            view: None,
            refresh_failed_at: None,
            paused_until: None,
            reported: Vec::new(),
            dry_run_logged: Vec::new(),
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            revision = %self.identity.revision,
            service = %self.identity.service,
            namespace = %self.identity.namespace,
            dry_run = self.config.dry_run,
            "guardrails running"
        );
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                () = self.window.completed() => {
                    // Bound the snapshot rate under heavy traffic.
                    let next = last + self.config.min_gap;
                    if Instant::now() < next {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep_until(next) => {}
                        }
                    }
                }
            }
            last = Instant::now();
            self.evaluate(&shutdown).await;
        }
    }

    async fn evaluate(&mut self, shutdown: &CancellationToken) {
        let snapshot = self.window.snapshot();
        let evaluated_at = Instant::now();
        // Judge before any API call: a slow or absent API must not delay detection.
        let rules = self.rules();
        let verdict = self.evaluator.judge(&snapshot, &rules);
        self.record_verdict(&verdict);
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let stale = self.stale();
        let role = self.role();
        match verdict {
            // With a stale (or no) view the rollback re-reads before deciding.
            Verdict::Breach {
                requests,
                violations,
            } if stale || matches!(role, Some(Role::Canary { .. })) => {
                let reason = Verdict::describe(&violations, requests, snapshot.window_seconds);
                let revision = self.identity.revision.clone();
                let outcome = self
                    .act("rollback", shutdown, |view, now| {
                        rollback::plan(view, &revision, &reason, now)
                    })
                    .await;
                match outcome {
                    Outcome::Written => {
                        tracing::warn!(revision = %revision, %reason, "guardrail breached: rolled back");
                        self.metrics
                            .rollback_latency(evaluated_at.elapsed().as_secs_f64());
                    }
                    Outcome::Nothing | Outcome::DryRun => {}
                    other => {
                        tracing::warn!(revision = %revision, %reason, outcome = other.label(), "guardrail breached: rollback not done")
                    }
                }
            }
            Verdict::Healthy { .. } if matches!(role, Some(Role::Canary { .. })) => {
                if stale {
                    self.refresh().await;
                }
                self.promote(shutdown).await;
            }
            _ if stale => self.refresh().await,
            _ => {}
        }
    }

    fn stale(&self) -> bool {
        self.view
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= self.config.refresh)
    }

    /// Re-reads the Service; after a failure, not again before `interval` has passed
    /// (an API outage must not turn every completed request into a connection attempt).
    async fn refresh(&mut self) {
        if self
            .refresh_failed_at
            .is_some_and(|t| t.elapsed() < self.config.interval)
        {
            return;
        }
        match self.api.view(&self.identity.service).await {
            Ok(v) => {
                self.refresh_failed_at = None;
                self.set_view(v);
            }
            Err(e) => {
                self.refresh_failed_at = Some(Instant::now());
                self.metrics.api_error(e.reason());
                tracing::warn!(error = %e, service = %self.identity.service, "cannot read the Service; judging with what was read before");
                if matches!(e, ApiError::Forbidden(_)) {
                    self.pause();
                }
            }
        }
    }

    fn set_view(&mut self, view: View) {
        if let Ok(traffic) = super::knative::resolve(&view.service) {
            let mine = super::knative::percent_of(&traffic, &self.identity.revision);
            let share = match (&view.isvc, view.role(&self.identity.revision)) {
                (Some(_), Ok(Role::Canary { percent, .. })) => percent,
                _ => mine,
            };
            self.metrics.traffic_percent(share as f64);
        }
        self.view = Some((view, Instant::now()));
    }

    fn rules(&mut self) -> Rules {
        let Some((view, _)) = &self.view else {
            return self.base.clone();
        };
        let (rules, errors) = Rules::with_overrides(&self.base, &view.annotations());
        for e in errors {
            let text = e.to_string();
            if !self.reported.contains(&text) {
                self.metrics.annotation_error();
                tracing::warn!(service = %self.identity.service, "{text}");
                self.reported.push(text);
            }
        }
        rules
    }

    fn role(&self) -> Option<Role> {
        let (view, _) = self.view.as_ref()?;
        match view.role(&self.identity.revision) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "traffic not resolvable yet");
                None
            }
        }
    }

    fn record_verdict(&self, verdict: &Verdict) {
        let label = match verdict {
            Verdict::Undecided { .. } => "undecided",
            Verdict::Healthy { .. } => "healthy",
            Verdict::Suspect { .. } => "suspect",
            Verdict::Breach { .. } => "breach",
        };
        self.metrics.evaluation(label);
        let broken: Vec<&'static str> = match verdict {
            Verdict::Suspect { violations, .. } | Verdict::Breach { violations, .. } => {
                violations.iter().map(|v| v.guardrail.as_str()).collect()
            }
            _ => Vec::new(),
        };
        for g in ["error_ratio", "p99", "sanity_failure_ratio", "psi"] {
            self.metrics.breached(g, broken.contains(&g));
        }
    }

    async fn promote(&mut self, shutdown: &CancellationToken) {
        let Some((view, _)) = &self.view else { return };
        let steps = match Steps::from_annotations(&view.annotations(), self.config.step_duration) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                let text = e.to_string();
                if !self.reported.contains(&text) {
                    self.metrics.annotation_error();
                    tracing::warn!(service = %self.identity.service, "{text}; no promotion");
                    self.reported.push(text);
                }
                return;
            }
        };
        let revision = self.identity.revision.clone();
        // Cheap pre-check on the cached view: most evaluations only wait.
        match promotion::plan(view, &revision, &steps, SystemTime::now()) {
            Ok(promotion::Plan::Write(_)) => {}
            _ => return,
        }
        let steps_for = steps.clone();
        self.act(
            "promotion",
            shutdown,
            move |view, now| match promotion::plan(view, &revision, &steps_for, now)? {
                promotion::Plan::Write(w) => Ok(Some(w)),
                _ => Ok(None),
            },
        )
        .await;
    }
}
