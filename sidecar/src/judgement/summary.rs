//! What a sidecar has seen since it started, as exact mergeable counts: the evidence
//! a judge adds up over the pods of a revision. Counts add and subtract exactly, and
//! HDR histograms (same bounds everywhere) merge exactly, so the summary of a revision
//! is the summary of all its requests, and a step's evidence is "now minus the step's
//! start" per pod.

use base64::Engine as _;
use hdrhistogram::{
    serialization::{Deserializer, Serializer as _, V2DeflateSerializer},
    Histogram,
};
use serde::{Deserialize, Serialize};

use crate::window::{Outcome, SanityOutcome};

/// Lowest and highest latency tracked (1 µs .. 1 h; larger values saturate) with two
/// significant digits (≤ 1% relative error): the same bounds as the window, so every
/// sidecar's histogram merges with every other's.
pub const HIST_LOW_US: u64 = 1;
pub const HIST_HIGH_US: u64 = 3_600_000_000;
pub const HIST_SIGFIG: u8 = 2;

/// A new empty latency histogram with the shared bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Cumulative counts of one pod (or, merged, of a revision).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests: u64,
    /// 5xx, non-zero `grpc-status`, upstream failures.
    pub errors: u64,
    /// Responses whose body was checked, and those that failed a check.
    pub sanity_checked: u64,
    pub sanity_failures: u64,
    /// Latencies (µs) of requests that completed after the pod's warm-up: a cold start
    /// is not a regression.
    pub latency: Histogram<u64>,
    /// Score counts per drift bin (empty without `sanity.score`).
    pub score_bins: Vec<u64>,
}

impl Default for Summary {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Summary {
    pub fn new(bins: usize) -> Self {
        Self {
            requests: 0,
            errors: 0,
            sanity_checked: 0,
            sanity_failures: 0,
            latency: new_histogram(),
            score_bins: vec![0; bins],
        }
    }

    /// Adds one completed request; its latency only when `timed` (after the warm-up).
    /// `bin_of` maps a score to its drift bin.
    pub fn record(&mut self, o: &Outcome<'_>, bin_of: impl Fn(f64) -> Option<usize>, timed: bool) {
        self.requests += 1;
        self.errors += u64::from(o.error);
        match o.sanity {
            SanityOutcome::Passed => self.sanity_checked += 1,
            SanityOutcome::Failed => {
                self.sanity_checked += 1;
                self.sanity_failures += 1;
            }
            SanityOutcome::NotApplicable | SanityOutcome::Unchecked => {}
        }
        if timed {
            let micros = u64::try_from(o.latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.latency.saturating_record(micros);
        }
        for score in o.scores {
            if let Some(bin) = bin_of(*score) {
                self.score_bins[bin] += 1;
            }
        }
    }

    /// Empties the counts, keeping the allocations.
    pub fn clear(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.sanity_checked = 0;
        self.sanity_failures = 0;
        self.latency.reset();
        self.score_bins.iter_mut().for_each(|b| *b = 0);
    }

    /// Requests in the latency histogram (those after the warm-up).
    pub fn timed(&self) -> u64 {
        self.latency.len()
    }

    /// Timed requests slower than `micros` (to the histogram's 1% resolution: a
    /// request in the same bucket as the limit counts as within it).
    pub fn slower_than(&self, micros: u64) -> u64 {
        let within = self.latency.count_between(0, micros);
        self.timed().saturating_sub(within)
    }

    pub fn scores(&self) -> u64 {
        self.score_bins.iter().sum()
    }

    /// Adds `other` (another pod, or later traffic).
    pub fn merge(&mut self, other: &Summary) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.sanity_checked += other.sanity_checked;
        self.sanity_failures += other.sanity_failures;
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.score_bins.len() < other.score_bins.len() {
            self.score_bins.resize(other.score_bins.len(), 0);
        }
        for (a, b) in self.score_bins.iter_mut().zip(&other.score_bins) {
            *a += b;
        }
    }

    /// Whether every count is at least `other`'s: a later state of the same process
    /// (a cheap check; [`Summary::since`] is the exact one).
    pub fn is_at_least(&self, other: &Summary) -> bool {
        self.requests >= other.requests
            && self.errors >= other.errors
            && self.sanity_checked >= other.sanity_checked
            && self.sanity_failures >= other.sanity_failures
            && self.timed() >= other.timed()
            && self.score_bins.len() >= other.score_bins.len()
            && self
                .score_bins
                .iter()
                .zip(&other.score_bins)
                .all(|(a, b)| a >= b)
    }

    /// What happened after `base` (an earlier summary of the same process), or `None`
    /// when `base` is not an earlier state of this one (a restarted process).
    pub fn since(&self, base: &Summary) -> Option<Summary> {
        let mut latency = self.latency.clone();
        latency.subtract(&base.latency).ok()?;
        let sub = |a: u64, b: u64| a.checked_sub(b);
        let mut score_bins = self.score_bins.clone();
        for (i, b) in base.score_bins.iter().enumerate() {
            let slot = score_bins.get_mut(i)?;
            *slot = slot.checked_sub(*b)?;
        }
        Some(Summary {
            requests: sub(self.requests, base.requests)?,
            errors: sub(self.errors, base.errors)?,
            sanity_checked: sub(self.sanity_checked, base.sanity_checked)?,
            sanity_failures: sub(self.sanity_failures, base.sanity_failures)?,
            latency,
            score_bins,
        })
    }

    /// The wire form (`/guardrails/summary`): counts, and the histogram in HdrHistogram's
    /// V2 deflate encoding (interoperable with the Java/Go/Python implementations), base64.
    pub fn to_wire(&self) -> WireSummary {
        let mut bytes = Vec::new();
        let latency = match V2DeflateSerializer::new().serialize(&self.latency, &mut bytes) {
            Ok(_) => base64::engine::general_purpose::STANDARD.encode(&bytes),
            // Serialising into memory cannot fail for a valid histogram; an empty field
            // makes the reader treat this pod's latency as missing, never as fast.
            Err(_) => String::new(),
        };
        WireSummary {
            requests: self.requests,
            errors: self.errors,
            sanity_checked: self.sanity_checked,
            sanity_failures: self.sanity_failures,
            latency,
            score_bins: self.score_bins.clone(),
        }
    }
}

/// [`Summary`] as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSummary {
    pub requests: u64,
    pub errors: u64,
    pub sanity_checked: u64,
    pub sanity_failures: u64,
    /// Base64 of the V2 deflate encoding of the latency histogram (µs).
    pub latency: String,
    #[serde(default)]
    pub score_bins: Vec<u64>,
}

/// Why a peer's summary could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("latency histogram is not base64: {0}")]
    Base64(String),
    #[error("latency histogram does not decode: {0}")]
    Histogram(String),
    #[error("latency histogram has other bounds than 1µs..1h at 2 significant digits")]
    Bounds,
    #[error("counts are inconsistent: {0}")]
    Counts(&'static str),
}

impl TryFrom<WireSummary> for Summary {
    type Error = WireError;

    fn try_from(w: WireSummary) -> Result<Self, WireError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(w.latency.as_bytes())
            .map_err(|e| WireError::Base64(e.to_string()))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| WireError::Histogram(format!("{e:?}")))?;
        if decoded.sigfig() != HIST_SIGFIG {
            return Err(WireError::Bounds);
        }
        // Re-record into the shared bounds: a peer's histogram with a wider range
        // would otherwise refuse to merge or subtract.
        let mut latency = new_histogram();
        for v in decoded.iter_recorded() {
            latency
                .record_n(
                    v.value_iterated_to().clamp(HIST_LOW_US, HIST_HIGH_US),
                    v.count_at_value(),
                )
                .map_err(|_| WireError::Bounds)?;
        }
        if w.errors > w.requests {
            return Err(WireError::Counts("errors > requests"));
        }
        if w.sanity_failures > w.sanity_checked {
            return Err(WireError::Counts("sanityFailures > sanityChecked"));
        }
        if latency.len() > w.requests {
            return Err(WireError::Counts("more timed requests than requests"));
        }
        Ok(Summary {
            requests: w.requests,
            errors: w.errors,
            sanity_checked: w.sanity_checked,
            sanity_failures: w.sanity_failures,
            latency,
            score_bins: w.score_bins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, errors: u64, latencies: &[u64]) -> Summary {
        let mut s = Summary::new(2);
        s.requests = requests;
        s.errors = errors;
        for l in latencies {
            s.latency.record(*l).expect("in range");
        }
        s.score_bins = vec![requests, errors];
        s
    }

    #[test]
    fn merged_summaries_equal_the_summary_of_the_merged_stream() {
        let a = summary(10, 1, &[100, 2_000, 30_000]);
        let b = summary(5, 2, &[150, 1_000_000]);
        let mut merged = a.clone();
        merged.merge(&b);
        let whole = summary(15, 3, &[100, 2_000, 30_000, 150, 1_000_000]);
        assert_eq!(merged.requests, whole.requests);
        assert_eq!(merged.errors, whole.errors);
        assert_eq!(merged.score_bins, whole.score_bins);
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(
                merged.latency.value_at_quantile(q),
                whole.latency.value_at_quantile(q)
            );
        }
        assert_eq!(merged.slower_than(10_000), 2);
    }

    #[test]
    fn since_is_the_traffic_after_the_base_and_refuses_another_process() {
        let base = summary(10, 1, &[100, 2_000]);
        let now = summary(25, 4, &[100, 2_000, 500_000, 600_000]);
        let delta = now.since(&base).expect("later state");
        assert_eq!((delta.requests, delta.errors, delta.timed()), (15, 3, 2));
        assert_eq!(delta.slower_than(100_000), 2);
        // A restarted process has fewer counts than the base.
        assert_eq!(base.since(&now), None);
    }

    #[test]
    fn the_wire_form_round_trips_and_rejects_nonsense() {
        let s = summary(40, 3, &[1, 7, 99_000, 3_600_000_000]);
        let json = serde_json::to_string(&s.to_wire()).expect("serialises");
        let back: WireSummary = serde_json::from_str(&json).expect("parses");
        let back = Summary::try_from(back).expect("decodes");
        assert_eq!(back, s);
        let mut bad = s.to_wire();
        bad.errors = 41;
        assert_eq!(
            Summary::try_from(bad),
            Err(WireError::Counts("errors > requests"))
        );
        let mut bad = s.to_wire();
        bad.latency = "!!".into();
        assert!(matches!(Summary::try_from(bad), Err(WireError::Base64(_))));
    }
}
