//! The simulation harness: seeded synthetic canary steps fed through the **real**
//! judgement (`verdict::judge`, with the loop's `step::Checkpoints`), to measure
//! false-rollback probability, detection delay and time to a healthy verdict.
//! `guardrail-sim` prints the grid; the test suite runs a short one.
//!
//! Model: each simulated second, the revision's pods serve Poisson(rate × pods)
//! requests, each failing with probability `p`; the judge looks at the revision's
//! cumulative counts up to `LOOKS_PER_SECOND` times a second (the loop judges on
//! completions, at most every 20 ms). A step ends at its duration or at the first
//! breach (the rollback).

use std::time::Duration;

use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Binomial, Distribution, Poisson};
use serde::Serialize;

use super::{
    step::Checkpoints,
    summary::Summary,
    verdict::{self, Budget, Counts, Detail, Evidence, Guardrail, State},
};
use crate::guardrails::thresholds::Thresholds;

/// Looks per simulated second, at most.
const LOOKS_PER_SECOND: u64 = 10;

/// One cell of the grid.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// Requests per second per pod.
    pub rate: f64,
    pub pods: u32,
    /// The true error ratio as a multiple of the limit (`f64::INFINITY`: every request
    /// fails).
    pub multiple: f64,
    pub step: Duration,
}

/// What the steps of one cell did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellResult {
    pub cell: Cell,
    pub steps: u32,
    pub rollbacks: u32,
    /// Requests and seconds to the rollback, over the steps that rolled back.
    pub delay_requests: Vec<u64>,
    pub delay_seconds: Vec<u64>,
    /// Seconds until the error-ratio guardrail first said healthy, over steps that did.
    pub healthy_seconds: Vec<u64>,
}

impl CellResult {
    pub fn rollback_ratio(&self) -> f64 {
        f64::from(self.rollbacks) / f64::from(self.steps.max(1))
    }
}

/// The `q` quantile (nearest rank) of `values`, or `None` when empty.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Settings shared by every cell: the defaults users get.
#[derive(Debug, Clone)]
pub struct Settings {
    pub thresholds: Thresholds,
    pub budget: Budget,
    pub checkpoint_every: Duration,
    pub horizon: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        let c = crate::guardrails::GuardrailsConfig::default();
        Self {
            thresholds: c.thresholds.clone(),
            budget: Budget {
                // A single judge (first of its step) spends 0.9 of the budgets.
                false_rollback: c.false_rollback_rate * 0.9,
                false_promotion: c.false_promotion_rate * 0.9,
                min_requests: c.min_requests,
            },
            checkpoint_every: c.checkpoint_interval,
            horizon: c.recent_horizon,
        }
    }
}

/// Runs `steps` seeded steps of `cell`.
pub fn run_cell(cell: Cell, steps: u32, seed: u64, settings: &Settings) -> CellResult {
    let limit = settings.thresholds.max_error_ratio.unwrap_or(0.05);
    let p = if cell.multiple.is_infinite() {
        1.0
    } else {
        (limit * cell.multiple).min(1.0)
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let poisson = Poisson::new((cell.rate * f64::from(cell.pods)).max(1e-9)).ok();
    let mut result = CellResult {
        cell,
        steps,
        rollbacks: 0,
        delay_requests: Vec::new(),
        delay_seconds: Vec::new(),
        healthy_seconds: Vec::new(),
    };
    let mut summary = Summary::new(0);
    let seconds = cell.step.as_secs();
    for _ in 0..steps {
        summary.requests = 0;
        summary.errors = 0;
        let mut checkpoints = Checkpoints::new(settings.checkpoint_every, settings.horizon);
        let mut healthy_at = None;
        for t in 1..=seconds {
            // The pods' requests in this second, summed (a sum of Poissons is Poisson),
            // judged in up to LOOKS_PER_SECOND batches: the loop judges on completions
            // (at most every 20 ms), so at low rates every request is a look.
            let n = poisson.map_or(0.0, |d| d.sample(&mut rng)) as u64;
            let looks = n.min(LOOKS_PER_SECOND);
            let mut breached = false;
            for look in 0..looks {
                let chunk = n / looks + u64::from(look < n % looks);
                let k = Binomial::new(chunk, p).map_or(0, |d| d.sample(&mut rng));
                summary.requests += chunk;
                summary.errors += k;
                let j = verdict::judge_with(
                    &Evidence {
                        canary: &summary,
                        stable: None,
                        checkpoints: checkpoints.as_slice(),
                        elapsed: Duration::from_secs(t),
                        psi_reference: None,
                    },
                    &settings.thresholds,
                    &settings.budget,
                    Detail::StateOnly,
                );
                if j.state == State::Breach {
                    result.rollbacks += 1;
                    result.delay_requests.push(summary.requests);
                    result.delay_seconds.push(t);
                    breached = true;
                    break;
                }
                let errors = j
                    .findings
                    .iter()
                    .find(|f| f.guardrail == Guardrail::ErrorRatio);
                if healthy_at.is_none() && errors.is_some_and(|f| f.state == State::Healthy) {
                    healthy_at = Some(t);
                }
            }
            if breached {
                break;
            }
            checkpoints.offer(
                Duration::from_secs(t),
                Counts::of(&summary, &settings.thresholds),
            );
        }
        if let Some(h) = healthy_at {
            result.healthy_seconds.push(h);
        }
    }
    result
}

/// Expected sample size under H1 of Wald's SPRT of `p1` against `p0` (Wald 1947, with
/// boundaries ln((1−β)/α) and ln(β/(1−α))): the yardstick for detection delay.
pub fn wald_asn(p0: f64, p1: f64, alpha: f64, beta: f64) -> f64 {
    let a = ((1.0 - beta) / alpha).ln();
    let b = (beta / (1.0 - alpha)).ln();
    let kl = p1 * (p1 / p0).ln() + (1.0 - p1) * ((1.0 - p1) / (1.0 - p0)).ln();
    ((1.0 - beta) * a + beta * b) / kl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(rate: f64, multiple: f64, minutes: u64) -> Cell {
        Cell {
            rate,
            pods: 1,
            multiple,
            step: Duration::from_secs(60 * minutes),
        }
    }

    /// The short grid of the suite (seeded, so deterministic): the full grid is
    /// `guardrail-sim`, reported in docs/guardrails.md.
    #[test]
    fn short_grid_meets_the_targets() {
        let s = Settings::default();
        let healthy = run_cell(cell(10.0, 0.8, 2), 40, 1, &s);
        assert!(
            healthy.rollbacks <= 1,
            "{} false rollbacks",
            healthy.rollbacks
        );
        let total = run_cell(cell(10.0, f64::INFINITY, 1), 40, 2, &s);
        assert_eq!(total.rollbacks, 40);
        assert!(quantile(&total.delay_requests, 1.0).expect("some") <= 10);
        let double = run_cell(cell(20.0, 2.0, 5), 40, 3, &s);
        let asn = wald_asn(0.05, 0.10, 0.01, 0.05);
        let median = quantile(&double.delay_requests, 0.5).expect("detected");
        assert!(
            double.rollbacks >= 36,
            "{} of 40 detected",
            double.rollbacks
        );
        assert!(
            (median as f64) < 2.0 * asn,
            "median {median} vs 2×ASN {}",
            2.0 * asn
        );
        let perfect = run_cell(cell(10.0, 0.0, 2), 10, 4, &s);
        assert_eq!(perfect.healthy_seconds.len(), 10);
    }

    #[test]
    fn wald_asn_matches_the_textbook_value() {
        // p0 = 0.05, p1 = 0.10, α = 0.01, β = 0.05: about 202 observations.
        let asn = wald_asn(0.05, 0.10, 0.01, 0.05);
        assert!((asn - 202.0).abs() < 2.0, "{asn}");
        assert_eq!(quantile(&[5, 1, 3], 0.5), Some(3));
    }
}
