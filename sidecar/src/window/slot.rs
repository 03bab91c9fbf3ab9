//! One sub-window's data: the same mergeable [`Summary`] the ledger keeps, plus the
//! display-only counts the guardrails do not judge.

use super::Outcome;
use crate::judgement::summary::Summary;

pub(super) struct SlotData {
    pub epoch: u64,
    /// False until the first record: a fresh slot's epoch 0 must not count as live data.
    pub touched: bool,
    pub summary: Summary,
    /// Responses that should have been checked but were not (too large, aborted).
    pub sanity_unchecked: u64,
    pub truncated: u64,
}

impl SlotData {
    pub fn new(bins: usize) -> Self {
        Self {
            epoch: 0,
            touched: false,
            summary: Summary::new(bins),
            sanity_unchecked: 0,
            truncated: 0,
        }
    }

    /// Starts the slot afresh when it is reused for a newer sub-window.
    pub fn rotate_to(&mut self, epoch: u64) {
        if self.epoch == epoch && self.touched {
            return;
        }
        self.epoch = epoch;
        self.touched = true;
        self.summary.clear();
        self.sanity_unchecked = 0;
        self.truncated = 0;
    }

    pub fn record(&mut self, o: &Outcome<'_>, bin_of: impl Fn(f64) -> Option<usize>) {
        // The window is for display: every latency counts, warm-up included.
        self.summary.record(o, bin_of, true);
        self.sanity_unchecked += u64::from(o.sanity == super::SanityOutcome::Unchecked);
        self.truncated += u64::from(o.truncated);
    }

    pub fn merge(&mut self, other: &SlotData) {
        self.summary.merge(&other.summary);
        self.sanity_unchecked += other.sanity_unchecked;
        self.truncated += other.truncated;
    }
}
