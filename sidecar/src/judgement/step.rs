//! A promotion step's evidence across the pods of the canary (and of the stable
//! revision, the baseline): per pod instance, the summary at the step's start (its
//! baseline) and the latest one; the step's evidence is the sum of "latest minus
//! baseline". Pure: reports and times are passed in.
//!
//! Baselines: a pod instance that started after the step began counts from zero (all
//! its traffic is in the step); one seen for the first time mid-step counts from that
//! first sight (what it served before is unknown here, so it is left out: missing data
//! is never counted as healthy, and dropping it does not depend on the outcomes). A
//! pod that goes away keeps its last report in the sum.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{
    summary::{Summary, WireError, WireSummary},
    verdict::{Checkpoint, Counts},
};

/// What one sidecar publishes on `/guardrails/summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    /// Random per process start: a restarted container is a new instance.
    pub instance: String,
    pub pod: String,
    pub revision: String,
    /// When the process started (wall clock, ms since the Unix epoch).
    pub started_unix_ms: u64,
    pub summary: Summary,
}

/// [`PeerReport`] as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReport {
    pub instance: String,
    pub pod: String,
    pub revision: String,
    pub started_unix_ms: u64,
    pub summary: WireSummary,
}

impl PeerReport {
    pub fn to_wire(&self) -> WireReport {
        WireReport {
            instance: self.instance.clone(),
            pod: self.pod.clone(),
            revision: self.revision.clone(),
            started_unix_ms: self.started_unix_ms,
            summary: self.summary.to_wire(),
        }
    }
}

impl TryFrom<WireReport> for PeerReport {
    type Error = WireError;

    fn try_from(w: WireReport) -> Result<Self, WireError> {
        Ok(PeerReport {
            instance: w.instance,
            pod: w.pod,
            revision: w.revision,
            started_unix_ms: w.started_unix_ms,
            summary: Summary::try_from(w.summary)?,
        })
    }
}

/// Which revision a report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cohort {
    Canary,
    Stable,
}

struct Tracked {
    base: Summary,
    latest: Summary,
}

impl Tracked {
    fn delta(&self) -> Summary {
        // `observe` only keeps a latest that is a later state of the base.
        self.latest
            .since(&self.base)
            .unwrap_or_else(|| Summary::new(self.latest.score_bins.len()))
    }
}

#[derive(Default)]
struct Pods {
    tracked: BTreeMap<String, Tracked>,
    /// Sum over every instance but `local`, recomputed only when a peer reports.
    others: Option<Summary>,
}

/// The evidence of one step.
pub struct StepEvidence {
    key: String,
    started_wall: SystemTime,
    started: Instant,
    local: String,
    canary: Pods,
    stable: Pods,
    checkpoints: Checkpoints,
}

impl StepEvidence {
    /// A step identified by `key` that began at `started_wall` (from the
    /// `guardrail.dev/step-started` record, or when the judge first saw it), tracked
    /// from `now`. `local` is this process's instance (its report changes on every
    /// evaluation, so it is summed apart from the peers). Checkpoints for the recent
    /// tests are taken every `every` and kept for `horizon`.
    pub fn new(
        key: String,
        started_wall: SystemTime,
        now: Instant,
        local: &str,
        every: Duration,
        horizon: Duration,
    ) -> Self {
        Self {
            key,
            started_wall,
            started: now,
            local: local.to_string(),
            canary: Pods::default(),
            stable: Pods::default(),
            checkpoints: Checkpoints::new(every, horizon),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn started_wall(&self) -> SystemTime {
        self.started_wall
    }

    /// Time since this judge began tracking the step.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn pods(&mut self, cohort: Cohort) -> &mut Pods {
        match cohort {
            Cohort::Canary => &mut self.canary,
            Cohort::Stable => &mut self.stable,
        }
    }

    /// Takes a report into the step.
    pub fn observe(&mut self, cohort: Cohort, report: PeerReport) {
        let started_wall = self.started_wall;
        let local = report.instance == self.local;
        let pods = self.pods(cohort);
        if !local {
            pods.others = None;
        }
        match pods.tracked.get_mut(&report.instance) {
            Some(t) => {
                // Only a later state counts: a reordered or stale answer is dropped.
                if report.summary.is_at_least(&t.latest) {
                    t.latest = report.summary;
                }
            }
            None => {
                let started =
                    SystemTime::UNIX_EPOCH + Duration::from_millis(report.started_unix_ms);
                let base = if started >= started_wall {
                    Summary::new(report.summary.score_bins.len())
                } else {
                    report.summary.clone()
                };
                pods.tracked.insert(
                    report.instance,
                    Tracked {
                        base,
                        latest: report.summary,
                    },
                );
            }
        }
    }

    /// The step's evidence of `cohort`: every instance's traffic since its baseline.
    pub fn totals(&mut self, cohort: Cohort) -> Summary {
        let local = self.local.clone();
        let pods = self.pods(cohort);
        if pods.others.is_none() {
            let mut sum = Summary::default();
            for (instance, t) in &pods.tracked {
                if *instance != local {
                    sum.merge(&t.delta());
                }
            }
            pods.others = Some(sum);
        }
        let mut total = pods.others.clone().unwrap_or_default();
        if let Some(t) = pods.tracked.get(&local) {
            total.merge(&t.delta());
        }
        total
    }

    /// Whether any report of `cohort` arrived.
    pub fn has(&self, cohort: Cohort) -> bool {
        match cohort {
            Cohort::Canary => !self.canary.tracked.is_empty(),
            Cohort::Stable => !self.stable.tracked.is_empty(),
        }
    }

    /// Offers a checkpoint of the canary's `counts` (taken when one is due).
    pub fn checkpoint(&mut self, now: Instant, counts: Counts) {
        let at = self.elapsed(now);
        self.checkpoints.offer(at, counts);
    }

    pub fn checkpoints(&self) -> &[Checkpoint] {
        self.checkpoints.as_slice()
    }
}

/// The checkpoints of a step for the recent-traffic tests: one every `every` (time
/// since the step started), kept for `horizon` (tests from older starts only repeat
/// the cumulative one). Shared by the loop and the simulation harness.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    list: Vec<Checkpoint>,
    next_index: u64,
    last: Option<Duration>,
    every: Duration,
    horizon: Duration,
}

impl Checkpoints {
    pub fn new(every: Duration, horizon: Duration) -> Self {
        Self {
            list: Vec::new(),
            next_index: 0,
            last: None,
            every,
            horizon,
        }
    }

    /// Records `counts` at `at` when a checkpoint is due.
    pub fn offer(&mut self, at: Duration, counts: Counts) {
        if self
            .last
            .is_some_and(|last| at.saturating_sub(last) < self.every)
        {
            return;
        }
        self.list.push(Checkpoint {
            index: self.next_index,
            at,
            counts,
        });
        self.next_index += 1;
        self.last = Some(at);
        let horizon = self.horizon;
        self.list.retain(|c| at.saturating_sub(c.at) <= horizon);
    }

    pub fn as_slice(&self) -> &[Checkpoint] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::thresholds::Thresholds;

    fn report(instance: &str, started_ms: u64, requests: u64, errors: u64) -> PeerReport {
        let mut summary = Summary::new(0);
        summary.requests = requests;
        summary.errors = errors;
        PeerReport {
            instance: instance.into(),
            pod: format!("pod-{instance}"),
            revision: "r".into(),
            started_unix_ms: started_ms,
            summary,
        }
    }

    fn step(now: Instant) -> StepEvidence {
        StepEvidence::new(
            "r/25".into(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            now,
            "me",
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn pods_started_before_the_step_count_from_first_sight_and_later_ones_from_zero() {
        let now = Instant::now();
        let mut s = step(now);
        s.observe(Cohort::Canary, report("old", 50_000, 40, 1));
        s.observe(Cohort::Canary, report("new", 150_000, 10, 2));
        s.observe(Cohort::Canary, report("me", 50_000, 5, 0));
        let t = s.totals(Cohort::Canary);
        assert_eq!((t.requests, t.errors), (10, 2));
        s.observe(Cohort::Canary, report("old", 50_000, 60, 4));
        s.observe(Cohort::Canary, report("me", 50_000, 9, 1));
        let t = s.totals(Cohort::Canary);
        assert_eq!((t.requests, t.errors), (10 + 20 + 4, 2 + 3 + 1));
        // A report that is not a later state (a stale or reordered one) is ignored.
        s.observe(Cohort::Canary, report("old", 50_000, 45, 1));
        assert_eq!(s.totals(Cohort::Canary).requests, 34);
        assert!(s.has(Cohort::Canary) && !s.has(Cohort::Stable));
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoints_are_spaced_and_bounded_by_the_horizon() {
        let now = Instant::now();
        let mut s = step(now);
        let t = Thresholds::default();
        for i in 0..200u64 {
            s.observe(Cohort::Canary, report("me", 200_000, i, 0));
            let counts = Counts::of(&s.totals(Cohort::Canary), &t);
            s.checkpoint(now + Duration::from_millis(500 * i), counts);
        }
        let c = s.checkpoints();
        let last = c.last().expect("some");
        // Every second (every other offer), carrying the counts offered then.
        assert_eq!((last.index, last.counts.errors), (99, (198, 0)));
        assert!(c.len() <= 62, "{}", c.len());
        assert!(c.windows(2).all(|w| w[1].at > w[0].at));
    }
}
