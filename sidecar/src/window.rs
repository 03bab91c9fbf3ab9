//! The sliding window the guardrails judge: the last `length` of traffic split into
//! rotating sub-windows, each holding exact counts, an HDR latency histogram (≤1%
//! relative error) and score-bin counts.
//!
//! Recording takes one uncontended per-sub-window mutex for well under a microsecond;
//! the data path never waits on readers for longer than that (snapshots copy a slot and
//! release it). Time is `tokio::time::Instant` so tests run on paused time.

mod psi;
mod slot;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{sync::Notify, time::Instant};

pub use psi::population_stability_index;
use slot::SlotData;

use crate::judgement::summary::Summary;

/// How a request's output sanity ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanityOutcome {
    /// No check applies (not a model response, or not 2xx).
    NotApplicable,
    /// Checks apply but the body was not checked (larger than the tee, or aborted).
    Unchecked,
    Passed,
    Failed,
}

/// One completed request, as the window records it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// From the request's arrival to its response's last byte (or failure).
    pub latency: Duration,
    /// 5xx, a non-zero `grpc-status`, or an upstream failure.
    pub error: bool,
    pub sanity: SanityOutcome,
    /// Generation cut by the length limit (OpenAI `finish_reason: length`).
    pub truncated: bool,
    /// Scores read for drift (empty unless `sanity.score` is configured).
    pub scores: &'a [f64],
}

/// The window's figures at one instant: what the guardrails judge and `/guardrails`
/// serves. Latencies are in seconds; ratios are 0 when their denominator is 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Time the figures cover: the full window, or less just after start.
    pub window_seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: f64,
    pub latency_p50_seconds: f64,
    pub latency_p95_seconds: f64,
    pub latency_p99_seconds: f64,
    /// Responses whose body was checked.
    pub sanity_checked: u64,
    pub sanity_failures: u64,
    /// `sanity_failures / sanity_checked`.
    pub sanity_failure_ratio: f64,
    /// Responses that should have been checked but were not (too large, aborted).
    pub sanity_unchecked: u64,
    /// Generations cut by their length limit.
    pub truncated: u64,
    /// Scores seen (for drift).
    pub scores: u64,
    /// Population Stability Index of the window's scores against the reference; `None`
    /// without a score config or without scores in the window.
    pub psi: Option<f64>,
}

/// The sliding window. Shared as `Arc<Window>` between the data path and evaluators.
pub struct Window {
    origin: Instant,
    sub_nanos: u64,
    slots: Box<[Mutex<SlotData>]>,
    /// Normalised reference shares and inner edges for PSI.
    reference: Option<(Vec<f64>, Vec<f64>)>,
    completions: AtomicU64,
    completed: Notify,
    /// Everything since start, for the step's evidence (`judgement`).
    ledger: Mutex<Summary>,
    /// Latencies of requests completing before this are left out of the ledger's
    /// histogram: a cold start is not a regression.
    warm_from: Instant,
}

impl Window {
    /// A window of `length` split into `sub_windows` parts. `score_reference` is
    /// `(edges, reference)` of the score-drift config.
    pub fn new(
        length: Duration,
        sub_windows: usize,
        score_reference: Option<(&[f64], &[f64])>,
    ) -> Self {
        let n = sub_windows.max(1);
        let sub_nanos = (length.as_nanos() / n as u128).max(1) as u64;
        let bins = score_reference.map_or(0, |(edges, _)| edges.len() + 1);
        let slots = (0..n).map(|_| Mutex::new(SlotData::new(bins))).collect();
        let reference = score_reference.map(|(edges, reference)| {
            let total: f64 = reference.iter().sum();
            (
                edges.to_vec(),
                reference.iter().map(|v| v / total).collect(),
            )
        });
        let origin = Instant::now();
        Self {
            origin,
            sub_nanos,
            slots,
            reference,
            completions: AtomicU64::new(0),
            completed: Notify::new(),
            ledger: Mutex::new(Summary::new(bins)),
            warm_from: origin,
        }
    }

    /// Leaves the latencies of the first `warmup` out of the ledger (the window, which
    /// is for display, keeps them).
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warm_from = self.origin + warmup;
        self
    }

    /// The drift reference as normalised shares per bin (`sanity.score`), if any.
    pub fn psi_reference(&self) -> Option<&[f64]> {
        self.reference.as_ref().map(|(_, shares)| shares.as_slice())
    }

    /// Everything recorded since start: this pod's evidence.
    pub fn ledger(&self) -> Summary {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The configured window length.
    pub fn length(&self) -> Duration {
        Duration::from_nanos(self.sub_nanos * self.slots.len() as u64)
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.sub_nanos as u128) as u64
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, SlotData> {
        // A panic while holding a slot cannot leave it inconsistent in a way that
        // matters more than losing the process's figures: keep going.
        self.slots[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one completed request and wakes the evaluator.
    pub fn record(&self, outcome: &Outcome<'_>) {
        let now = Instant::now();
        let epoch = self.epoch(now);
        let bin_of = |score: f64| {
            self.reference
                .as_ref()
                .map(|(edges, _)| edges.partition_point(|edge| *edge <= score))
        };
        {
            let mut slot = self.lock((epoch % self.slots.len() as u64) as usize);
            slot.rotate_to(epoch);
            slot.record(outcome, bin_of);
        }
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(outcome, bin_of, now >= self.warm_from);
        self.completions.fetch_add(1, Ordering::Release);
        self.completed.notify_one();
    }

    /// Completions recorded since start (a cheap change counter for evaluators).
    pub fn completions(&self) -> u64 {
        self.completions.load(Ordering::Acquire)
    }

    /// Resolves when a request completes after the last wake-up (single consumer: one
    /// evaluator task per process; a completion while it was busy wakes it once).
    pub async fn completed(&self) {
        self.completed.notified().await;
    }

    /// The figures over the live sub-windows.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let current = self.epoch(now);
        let n = self.slots.len() as u64;
        let oldest = current.saturating_sub(n - 1);
        let mut merged = SlotData::new(self.reference.as_ref().map_or(0, |(e, _)| e.len() + 1));
        for index in 0..self.slots.len() {
            let slot = self.lock(index);
            if slot.epoch >= oldest && slot.epoch <= current && slot.touched {
                merged.merge(&slot);
            }
        }
        // Live data spans the n-1 full sub-windows before the current one plus the part
        // of the current one elapsed so far, or everything since start if shorter.
        let elapsed = now.saturating_duration_since(self.origin);
        let into_current = (elapsed.as_nanos() % self.sub_nanos as u128) as u64;
        let covered = elapsed.min(Duration::from_nanos(
            (n - 1) * self.sub_nanos + into_current,
        ));
        let extras = (merged.sanity_unchecked, merged.truncated);
        let merged = merged.summary;
        let quantile = |q: f64| {
            if merged.requests == 0 {
                0.0
            } else {
                merged.latency.value_at_quantile(q) as f64 / 1e6
            }
        };
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let psi = self.reference.as_ref().and_then(|(_, reference)| {
            (merged.scores() > 0).then(|| population_stability_index(reference, &merged.score_bins))
        });
        Snapshot {
            window_seconds: covered.as_secs_f64(),
            requests: merged.requests,
            errors: merged.errors,
            error_ratio: ratio(merged.errors, merged.requests),
            latency_p50_seconds: quantile(0.50),
            latency_p95_seconds: quantile(0.95),
            latency_p99_seconds: quantile(0.99),
            sanity_checked: merged.sanity_checked,
            sanity_failures: merged.sanity_failures,
            sanity_failure_ratio: ratio(merged.sanity_failures, merged.sanity_checked),
            sanity_unchecked: extras.0,
            truncated: extras.1,
            scores: merged.scores(),
            psi,
        }
    }
}

#[cfg(test)]
mod tests;
