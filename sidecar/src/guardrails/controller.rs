//! The guardrail loop beside the data path. Every sidecar publishes its summary; in a
//! canary revision one pod (the Lease holder) judges the whole revision: it reads every
//! pod's summary (and the stable revision's, the baseline), runs the pure judgement
//! (`crate::judgement`) on the step's evidence, and acts: roll back on a breach, walk a
//! healthy canary through its steps, apply the deadline action to a step that stays
//! undecided. It only reads the window and the ledger, so the proxy never waits on it.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    api::{peer_pods, ApiError, Cluster, PeerPod},
    config::{DeadlineAction, GuardrailsConfig},
    knative::Role,
    lease::{Election, Standing},
    local::{Local, Published},
    metrics::GuardrailMetrics,
    peers::Scraper,
    promotion, records,
    records::Steps,
    rollback,
    thresholds::Rules,
    view::View,
};
use crate::{
    identity::Identity,
    judgement::{
        step::{Cohort, StepEvidence},
        verdict::{self, Budget, Counts, Evidence, Judgement, State},
    },
};

#[cfg(test)]
mod tests;
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

/// The peers of one cohort as last listed.
#[derive(Default)]
struct Cohorts {
    canary: Vec<PeerPod>,
    stable: Vec<PeerPod>,
    /// Pods whose summary is missing this round, with why.
    missing: Vec<String>,
    /// Why peers are not known at all (pods list forbidden), if so.
    unknown: Option<String>,
    at: Option<Instant>,
}

/// One read of the Service, parsed once: annotations, the rules they set, and this
/// revision's role.
struct ServiceRead {
    view: View,
    at: Instant,
    annotations: BTreeMap<String, String>,
    rules: Rules,
    role: Option<Role>,
}

/// The running guardrails of one revision.
pub struct Controller<A: Cluster> {
    config: GuardrailsConfig,
    identity: Identity,
    local: Arc<Local>,
    metrics: GuardrailMetrics,
    api: A,
    base: Rules,
    /// The Service as last read, with what every evaluation needs from it.
    view: Option<ServiceRead>,
    refresh_failed_at: Option<Instant>,
    paused_until: Option<Instant>,
    /// Annotation problems already reported, so a bad value logs once.
    reported: Vec<String>,
    /// In dry-run, the actions already logged (the loop would repeat them forever).
    dry_run_logged: Vec<String>,
    election: Election,
    scraper: Scraper,
    step: Option<StepEvidence>,
    peers: Cohorts,
    /// Steps whose deadline action was already taken.
    deadline_done: Option<String>,
}

impl<A: Cluster> Controller<A> {
    pub fn new(
        config: GuardrailsConfig,
        identity: Identity,
        local: Arc<Local>,
        metrics: GuardrailMetrics,
        api: A,
    ) -> Self {
        let base = Rules {
            thresholds: config.thresholds.clone(),
            min_requests: config.min_requests,
        };
        let me = if identity.pod.is_empty() {
            local.instance.clone()
        } else {
            identity.pod.clone()
        };
        Self {
            election: Election::new(&identity.revision, &me, config.lease_duration),
            scraper: Scraper::new(config.peer_timeout),
            config,
            identity,
            local,
            metrics,
            api,
            base,
            view: None,
            refresh_failed_at: None,
            paused_until: None,
            reported: Vec::new(),
            dry_run_logged: Vec::new(),
            step: None,
            peers: Cohorts::default(),
            deadline_done: None,
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
                () = self.local.window().completed() => {
                    // Bound the evaluation rate under heavy traffic.
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
        let evaluated_at = Instant::now();
        if self.stale() {
            self.refresh().await;
        }
        let Some(role) = self.role() else {
            self.not_judging("the Service is not read yet".into());
            return;
        };
        let Role::Canary { percent, stable } = role else {
            self.step = None;
            self.metrics.evaluation("not_canary");
            self.metrics.standing("none");
            self.not_judging(format!(
                "revision {} is {role:?} in its Service: only canaries are judged",
                self.identity.revision
            ));
            return;
        };
        let rules = self
            .view
            .as_ref()
            .map_or_else(|| self.base.clone(), |r| r.rules.clone());
        let (key, started_wall) = self.step_key(percent);
        if self.step.as_ref().map(StepEvidence::key) != Some(key.as_str()) {
            tracing::info!(step = %key, "judging a new step");
            self.step = Some(StepEvidence::new(
                key.clone(),
                started_wall,
                evaluated_at,
                &self.local.instance,
                self.config.checkpoint_interval,
                self.config.recent_horizon,
            ));
            self.peers = Cohorts::default();
            self.deadline_done = None;
        }
        let standing = self
            .election
            .tick(&self.api, &key, evaluated_at)
            .await
            .clone();
        self.metrics.standing(standing.label());
        let share = standing.budget_share(self.config.solo_judges);
        // Every other standing judges (at its share of the budgets).
        if let Standing::Follower { holder } = &standing {
            self.metrics.evaluation("follower");
            self.not_judging(format!(
                "pod {holder} judges revision {}",
                self.identity.revision
            ));
            return;
        }
        self.gather(&standing, &stable, evaluated_at).await;
        let Some(step) = self.step.as_mut() else {
            return;
        };
        let canary = step.totals(Cohort::Canary);
        step.checkpoint(evaluated_at, Counts::of(&canary, &rules.thresholds));
        let stable_totals = step
            .has(Cohort::Stable)
            .then(|| step.totals(Cohort::Stable));
        let budget = Budget {
            false_rollback: self.config.false_rollback_rate * share,
            false_promotion: self.config.false_promotion_rate * share,
            min_requests: rules.min_requests,
        };
        let mut judgement = verdict::judge(
            &Evidence {
                canary: &canary,
                stable: stable_totals.as_ref(),
                checkpoints: step.checkpoints(),
                elapsed: step.elapsed(evaluated_at),
                psi_reference: self.local.window().psi_reference(),
            },
            &rules.thresholds,
            &budget,
        );
        // Missing data is never counted as healthy.
        if judgement.state == State::Healthy && !self.peers.missing.is_empty() {
            judgement.state = State::Undecided;
        }
        let notes = self.notes(&standing, share);
        self.record(&judgement, notes, started_wall);
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match judgement.state {
            State::Breach => {
                let reason = judgement.describe();
                self.rollback(&reason, &judgement, evaluated_at, shutdown)
                    .await;
            }
            State::Healthy => self.promote(&judgement, shutdown, false).await,
            State::Undecided | State::Skipped => {
                self.deadline(&key, started_wall, &judgement, shutdown)
                    .await;
            }
        }
    }

    /// Reads this pod's summary, and the peers' every `peerInterval`.
    async fn gather(&mut self, standing: &Standing, stable: &str, now: Instant) {
        let own = self.local.report();
        if let Some(step) = self.step.as_mut() {
            step.observe(Cohort::Canary, own);
        }
        if matches!(standing, Standing::Solo { .. }) {
            self.peers.unknown = Some("judging alone: no Lease, so no peers".into());
            return;
        }
        if self
            .peers
            .at
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.peer_interval)
        {
            return;
        }
        self.peers.at = Some(now);
        let port = self.config.peer_admin_port;
        let revision = self.identity.revision.clone();
        match (self.api.pods(&revision).await, self.api.pods(stable).await) {
            (Ok(canary), Ok(stable_pods)) => {
                self.peers.canary = peer_pods(&canary, &revision, port)
                    .into_iter()
                    .filter(|p| p.name != self.identity.pod)
                    .collect();
                self.peers.stable = peer_pods(&stable_pods, stable, port);
                self.peers.unknown = None;
            }
            (Err(e), _) | (_, Err(e)) => {
                self.metrics.api_error(e.reason());
                if matches!(e, ApiError::Forbidden(_)) {
                    self.peers.unknown = Some(format!(
                        "cannot list pods ({e}): judging this pod's traffic only"
                    ));
                }
                tracing::debug!(error = %e, "cannot list the revision's pods; keeping the last list");
            }
        }
        let (canary_reports, stable_reports) = futures::join!(
            self.scraper.scrape_all(&self.peers.canary, &revision),
            self.scraper.scrape_all(&self.peers.stable, stable),
        );
        let mut missing = Vec::new();
        let Some(step) = self.step.as_mut() else {
            return;
        };
        for (cohort, reports) in [
            (Cohort::Canary, canary_reports),
            (Cohort::Stable, stable_reports),
        ] {
            for r in reports {
                match r {
                    Ok(report) => step.observe(cohort, report),
                    Err(e) => {
                        self.metrics.peer_error(e.reason());
                        tracing::debug!(error = %e, "peer summary missing");
                        if cohort == Cohort::Canary {
                            missing.push(e.to_string());
                        }
                    }
                }
            }
        }
        self.peers.missing = missing;
    }

    /// What `/guardrails` shows while this pod does not judge.
    fn not_judging(&self, why: String) {
        self.local.publish(Published::NotJudging { why });
    }

    fn notes(&self, standing: &Standing, share: f64) -> Vec<String> {
        let mut notes = Vec::new();
        if let Standing::Solo { reason } = standing {
            notes.push(format!("{reason}; budgets × {share:.3} (1/soloJudges)"));
        }
        if let Standing::Judge { generation } = standing {
            if *generation > 1 {
                notes.push(format!(
                    "judge #{generation} of this step: budgets × {share:.4}"
                ));
            }
        }
        if let Some(u) = &self.peers.unknown {
            notes.push(u.clone());
        }
        for m in &self.peers.missing {
            notes.push(format!("missing: {m} (no healthy verdict without it)"));
        }
        notes
    }

    /// The step key and when it began: the `step-started` record when it is this
    /// step's, else now (the first time this judge sees the step).
    fn step_key(&self, percent: i64) -> (String, SystemTime) {
        let revision = &self.identity.revision;
        let recorded = self
            .view
            .as_ref()
            .and_then(|r| records::step_started_at(&r.annotations, revision, percent));
        match recorded {
            Some(t) => (format!("{revision}/{percent}/{}", records::rfc3339(t)), t),
            None => {
                let t = self
                    .step
                    .as_ref()
                    .filter(|s| s.key().starts_with(&format!("{revision}/{percent}/-")))
                    .map_or_else(SystemTime::now, StepEvidence::started_wall);
                (format!("{revision}/{percent}/-"), t)
            }
        }
    }

    fn record(&self, judgement: &Judgement, notes: Vec<String>, step_started: SystemTime) {
        self.metrics.evaluation(judgement.state.as_str());
        for f in &judgement.findings {
            self.metrics.verdict(f.guardrail.as_str(), f.state.as_str());
        }
        for g in verdict::Guardrail::ALL {
            if !judgement.findings.iter().any(|f| f.guardrail == g) {
                self.metrics.verdict(g.as_str(), "off");
            }
        }
        self.local.publish(Published::Judged {
            judgement: judgement.clone(),
            notes,
            step_started,
        });
        tracing::debug!(state = judgement.state.as_str(), verdict = %judgement.describe(), "judged");
    }

    async fn rollback(
        &mut self,
        reason: &str,
        judgement: &Judgement,
        evaluated_at: Instant,
        shutdown: &CancellationToken,
    ) {
        let revision = self.identity.revision.clone();
        let detail = verdict_annotation(judgement);
        let outcome = self
            .act("rollback", shutdown, |view, now| {
                rollback::plan(view, &revision, reason, &detail, now)
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

    /// The deadline of an undecided step: hold (an Event saying why), roll back, or
    /// promote without evidence (opt-in only, with a Warning Event).
    async fn deadline(
        &mut self,
        key: &str,
        started: SystemTime,
        judgement: &Judgement,
        shutdown: &CancellationToken,
    ) {
        let Some(read) = &self.view else { return };
        let (deadline, mut action) = records::deadline(
            &read.annotations,
            self.config.decision_deadline,
            self.config.deadline_action,
        );
        let annotated = read.annotations.contains_key(records::DEADLINE_ACTION);
        if action == DeadlineAction::Promote
            && annotated
            && !self.config.overrides.allow_deadline_promote
        {
            action = self.config.deadline_action;
            self.report_once(format!(
                "annotation {}=promote ignored: forbidden by guardrails.overrides.allowDeadlinePromote: false; using {}",
                records::DEADLINE_ACTION,
                action.as_str()
            ));
        }
        let waited = SystemTime::now()
            .duration_since(started)
            .unwrap_or(Duration::ZERO);
        if waited < deadline || self.deadline_done.as_deref() == Some(key) {
            return;
        }
        self.deadline_done = Some(key.to_string());
        let why = format!(
            "revision {} undecided after {} (deadline {}): {}",
            self.identity.revision,
            humantime::format_duration(Duration::from_secs(waited.as_secs())),
            humantime::format_duration(deadline),
            judgement.describe()
        );
        tracing::warn!(action = action.as_str(), "{why}");
        self.metrics.deadline(action.as_str());
        match action {
            DeadlineAction::Hold => {
                self.note_event(
                    "GuardrailUndecided",
                    format!("{why}; holding traffic"),
                    true,
                )
                .await;
            }
            DeadlineAction::Rollback => {
                let reason = format!("undecided past the deadline: {why}");
                self.rollback(&reason, judgement, Instant::now(), shutdown)
                    .await;
            }
            DeadlineAction::Promote => {
                self.note_event(
                    "GuardrailPromotedWithoutEvidence",
                    format!("{why}; promoting without evidence (deadline-action: promote)"),
                    true,
                )
                .await;
                self.promote(judgement, shutdown, true).await;
            }
        }
    }

    async fn note_event(&self, reason: &str, note: String, warning: bool) {
        let Some(read) = &self.view else { return };
        let (subject, obj) = read.view.subject();
        if let Err(e) = self.api.event(subject, obj, warning, reason, note).await {
            self.metrics.api_error(e.reason());
            tracing::warn!(error = %e, "cannot record the Event");
        }
    }

    fn stale(&self) -> bool {
        self.view
            .as_ref()
            .is_none_or(|r| r.at.elapsed() >= self.config.refresh)
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

    /// Takes a new read of the Service: parses its annotations, rules and this
    /// revision's role once (bad annotations are reported once).
    fn set_view(&mut self, view: View) {
        let annotations = view.annotations();
        let (rules, errors) =
            Rules::with_overrides(&self.base, &self.config.overrides, &annotations);
        for e in errors {
            self.report_once(e.to_string());
        }
        let role = match view.role(&self.identity.revision) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "traffic not resolvable yet");
                None
            }
        };
        if let Ok(traffic) = super::knative::resolve(&view.service) {
            let share = match (&view.isvc, &role) {
                (Some(_), Some(Role::Canary { percent, .. })) => *percent,
                _ => super::knative::percent_of(&traffic, &self.identity.revision),
            };
            self.metrics.traffic_percent(share as f64);
        }
        self.view = Some(ServiceRead {
            view,
            at: Instant::now(),
            annotations,
            rules,
            role,
        });
    }

    /// Logs and counts an annotation problem the first time it is seen.
    fn report_once(&mut self, text: String) {
        if !self.reported.contains(&text) {
            self.metrics.annotation_error();
            tracing::warn!(service = %self.identity.service, "{text}");
            self.reported.push(text);
        }
    }

    fn role(&self) -> Option<Role> {
        self.view.as_ref()?.role.clone()
    }

    async fn promote(
        &mut self,
        judgement: &Judgement,
        shutdown: &CancellationToken,
        without_evidence: bool,
    ) {
        let Some(read) = &self.view else { return };
        let steps = match Steps::from_annotations(&read.annotations, self.config.step_duration) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                self.report_once(format!("{e}; no promotion"));
                return;
            }
        };
        let view = &read.view;
        let revision = self.identity.revision.clone();
        let detail = if without_evidence {
            json!({ "state": "promoted without evidence at the decision deadline", "findings": judgement.findings }).to_string()
        } else {
            verdict_annotation(judgement)
        };
        // Cheap pre-check on the cached view: most evaluations only wait.
        match promotion::plan(view, &revision, &steps, &detail, SystemTime::now()) {
            Ok(promotion::Plan::Write(_)) => {}
            _ => return,
        }
        let steps_for = steps.clone();
        self.act(
            "promotion",
            shutdown,
            move |view, now| match promotion::plan(view, &revision, &steps_for, &detail, now)? {
                promotion::Plan::Write(w) => Ok(Some(w)),
                _ => Ok(None),
            },
        )
        .await;
    }
}

/// The compact verdict written beside a rollback or promotion (`guardrail.dev/verdict`).
fn verdict_annotation(judgement: &Judgement) -> String {
    json!({ "state": judgement.state.as_str(), "findings": judgement.findings }).to_string()
}
