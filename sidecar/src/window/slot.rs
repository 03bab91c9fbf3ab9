//! One sub-window's data.

use hdrhistogram::Histogram;

use super::{Outcome, SanityOutcome};

pub(super) struct SlotData {
    pub epoch: u64,
    /// False until the first record: a fresh slot's epoch 0 must not count as live data.
    pub touched: bool,
    pub requests: u64,
    pub errors: u64,
    pub sanity_checked: u64,
    pub sanity_failures: u64,
    pub sanity_unchecked: u64,
    pub truncated: u64,
    pub scores: u64,
    pub score_bins: Vec<u64>,
    pub latency: Histogram<u64>,
}

impl SlotData {
    pub fn new(latency: Histogram<u64>, bins: usize) -> Self {
        Self {
            epoch: 0,
            touched: false,
            requests: 0,
            errors: 0,
            sanity_checked: 0,
            sanity_failures: 0,
            sanity_unchecked: 0,
            truncated: 0,
            scores: 0,
            score_bins: vec![0; bins],
            latency,
        }
    }

    /// Starts the slot afresh when it is reused for a newer sub-window.
    pub fn rotate_to(&mut self, epoch: u64) {
        if self.epoch == epoch && self.touched {
            return;
        }
        self.epoch = epoch;
        self.touched = true;
        self.requests = 0;
        self.errors = 0;
        self.sanity_checked = 0;
        self.sanity_failures = 0;
        self.sanity_unchecked = 0;
        self.truncated = 0;
        self.scores = 0;
        self.score_bins.iter_mut().for_each(|b| *b = 0);
        self.latency.reset();
    }

    pub fn record(&mut self, o: &Outcome<'_>, bin_of: impl Fn(f64) -> Option<usize>) {
        self.requests += 1;
        self.errors += u64::from(o.error);
        match o.sanity {
            SanityOutcome::NotApplicable => {}
            SanityOutcome::Unchecked => self.sanity_unchecked += 1,
            SanityOutcome::Passed => self.sanity_checked += 1,
            SanityOutcome::Failed => {
                self.sanity_checked += 1;
                self.sanity_failures += 1;
            }
        }
        self.truncated += u64::from(o.truncated);
        let micros = u64::try_from(o.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency.saturating_record(micros);
        for score in o.scores {
            if let Some(bin) = bin_of(*score) {
                self.score_bins[bin] += 1;
                self.scores += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &SlotData) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.sanity_checked += other.sanity_checked;
        self.sanity_failures += other.sanity_failures;
        self.sanity_unchecked += other.sanity_unchecked;
        self.truncated += other.truncated;
        self.scores += other.scores;
        for (a, b) in self.score_bins.iter_mut().zip(&other.score_bins) {
            *a += b;
        }
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}
