//! Anytime-valid tests and confidence bounds for a Bernoulli rate (an error ratio, a
//! sanity-failure ratio, a share of slow requests), computed from counts alone.
//!
//! Method: a *mixture sequential probability ratio test* (mSPRT; Robbins 1970, Johari,
//! Pekelis & Walsh 2015/2022 "Always valid inference"). For a null rate `p0` and a set
//! of alternatives `pᵢ` with weights `wᵢ` (Σwᵢ = 1), after `n` trials with `k` events
//!
//! ```text
//!   Λ(n, k) = Σ wᵢ · (pᵢ/p0)^k · ((1−pᵢ)/(1−p0))^(n−k)
//! ```
//!
//! Each term is the likelihood ratio of Wald's SPRT of `pᵢ` against `p0`. On the breach
//! side (`pᵢ > p0`) every term is a non-negative supermartingale with mean ≤ 1 under any
//! true rate `p ≤ p0`, and so is their mixture; by Ville's inequality
//! `P(sup_n Λ ≥ 1/α) ≤ α`. So "breach when Λ ≥ 1/α" has false-alarm probability ≤ α
//! **however often it is evaluated**, for as long as the data keeps coming. The healthy
//! side is the mirror image (`pᵢ < p0`, supermartingale under `p ≥ p0`): "healthy"
//! (evidence the rate is under the limit) is wrong with probability ≤ α.
//!
//! The alternatives are spaced on the odds scale (`odds(pᵢ) = odds(p0)·rᵢ`), which keeps
//! each term monotone in `p0`; inverting the tests therefore gives time-uniform
//! confidence bounds by bisection (the confidence-sequence duality of Howard, Ramdas,
//! McAuliffe & Sekhon, Annals of Statistics 2021). Because Λ depends on `(n, k)` only,
//! counts from several pods simply add, and a judge can be fed counts in batches.
//!
//! The breach weights favour 1.5–2.5× the limit (so a 2× breach is found within about
//! 1.7× the expected sample size of Wald's SPRT tuned for exactly 2×) while keeping
//! far-off alternatives, so a total failure is found in about three requests.

/// Odds ratios and weights of the breach-side alternatives (rate above the null).
pub const BREACH: [(f64, f64); 7] = [
    (1.5, 0.15),
    (2.0, 0.30),
    (2.5, 0.15),
    (4.0, 0.10),
    (10.0, 0.10),
    (100.0, 0.10),
    (1e4, 0.10),
];

/// Odds ratios (divisors) and weights of the healthy-side alternatives (rate below).
pub const HEALTHY: [(f64, f64); 5] = [
    (1.5, 0.15),
    (2.0, 0.30),
    (4.0, 0.25),
    (10.0, 0.15),
    (1e4, 0.15),
];

/// Which claim a test can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// "The rate is above `p0`": a breach.
    Above,
    /// "The rate is below `p0`": healthy.
    Below,
}

/// `ln Λ(n, k)` against null `p0` on `side`. Defined for every `p0` in `[0, 1]`: at
/// the edges a single observation can be conclusive (one event refutes `p = 0`).
pub fn log_mixture(side: Side, n: u64, k: u64, p0: f64) -> f64 {
    let k = k.min(n) as f64;
    let misses = n as f64 - k;
    if p0 <= 0.0 {
        // Under p = 0 an event is impossible: it refutes the null at once; no data
        // can ever show the rate is below 0.
        return match side {
            Side::Above if k > 0.0 => f64::INFINITY,
            Side::Above => 0.0,
            Side::Below => f64::NEG_INFINITY,
        };
    }
    if p0 >= 1.0 {
        return match side {
            Side::Below if misses > 0.0 => f64::INFINITY,
            Side::Below => 0.0,
            Side::Above => f64::NEG_INFINITY,
        };
    }
    let odds = p0 / (1.0 - p0);
    let terms = |alternatives: &[(f64, f64)], up: bool| -> f64 {
        let logs = alternatives.iter().map(|&(ratio, weight)| {
            let o = if up { odds * ratio } else { odds / ratio };
            // With p = o/(1+o): ln(p/p0) = ln(o/odds) + ln((1+odds)/(1+o)) and
            // ln((1-p)/(1-p0)) = ln((1+odds)/(1+o)), exact for tiny p0 too.
            let ln_miss = ((1.0 + odds) / (1.0 + o)).ln();
            let ln_hit = (o / odds).ln() + ln_miss;
            weight.ln() + k * ln_hit + misses * ln_miss
        });
        log_sum_exp(logs)
    };
    match side {
        Side::Above => terms(&BREACH, true),
        Side::Below => terms(&HEALTHY, false),
    }
}

fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// True when the test of `side` against `p0` rejects at level `alpha`.
pub fn rejects(side: Side, n: u64, k: u64, p0: f64, alpha: f64) -> bool {
    // Shortcut: when the observed rate lies on the null's side, every term is
    // exp(−n·KL(·)) ≤ 1 at most (the exponent is monotone in k/n), so Λ ≤ 1 and no
    // α < 1 can reject. It saves the exponentials for most looks of a healthy canary.
    let observed = if n == 0 { p0 } else { k as f64 / n as f64 };
    let hopeless = match side {
        Side::Above => observed <= p0,
        Side::Below => observed >= p0,
    };
    if hopeless && alpha < 1.0 && p0 > 0.0 && p0 < 1.0 {
        return false;
    }
    log_mixture(side, n, k, p0) >= threshold(alpha)
}

/// `ln(1/α)`: the evidence a claim needs.
pub fn threshold(alpha: f64) -> f64 {
    -alpha.clamp(f64::MIN_POSITIVE, 1.0).ln()
}

/// Time-uniform lower confidence bound of the rate at level `alpha`: with probability
/// ≥ 1−α it never exceeds the true rate, however often it is computed. 0 when the data
/// cannot exclude any rate above 0.
pub fn lower_bound(n: u64, k: u64, alpha: f64) -> f64 {
    // The breach test of null q rejects for q below the bound (monotone in q).
    if k == 0 || !rejects(Side::Above, n, k, 1e-12, alpha) {
        return 0.0;
    }
    bisect(|q| rejects(Side::Above, n, k, q, alpha))
}

/// Time-uniform upper confidence bound of the rate at level `alpha`; 1 when the data
/// cannot exclude any rate below 1.
pub fn upper_bound(n: u64, k: u64, alpha: f64) -> f64 {
    if k >= n || !rejects(Side::Below, n, k, 1.0 - 1e-12, alpha) {
        return 1.0;
    }
    bisect(|q| !rejects(Side::Below, n, k, q, alpha))
}

/// The boundary in (0, 1) of a predicate that holds below it and not above, found on
/// the log-odds scale (80 halvings of a 55-unit interval: far below f64 noise).
fn bisect(holds: impl Fn(f64) -> bool) -> f64 {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (mut lo, mut hi) = (logit(1e-12), logit(1.0 - 1e-12));
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if holds(expit(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    expit(0.5 * (lo + hi))
}

/// About how many more trials at the current observed rate a claim on `side` needs
/// (for "undecided: about N more requests"); `None` when the observed rate points the
/// other way or the claim would need more than 10⁹.
pub fn more_needed(side: Side, n: u64, k: u64, p0: f64, alpha: f64) -> Option<u64> {
    if rejects(side, n, k, p0, alpha) {
        return Some(0);
    }
    let rate = if n == 0 {
        match side {
            // With no data, assume a total failure (breach) or a perfect run (healthy):
            // the fewest requests that could decide.
            Side::Above => 1.0,
            Side::Below => 0.0,
        }
    } else {
        k as f64 / n as f64
    };
    match side {
        Side::Above if rate <= p0 => return None,
        Side::Below if rate >= p0 => return None,
        _ => {}
    }
    // Exponential search then bisection on the number of extra trials at `rate`.
    let extra = |m: u64| {
        let events = (rate * m as f64).round() as u64;
        rejects(side, n + m, k + events, p0, alpha)
    };
    let mut hi = 1u64;
    while !extra(hi) {
        hi *= 2;
        if hi > 1_000_000_000 {
            return None;
        }
    }
    // `extra` is false at hi/2 (the previous doubling, or no extra trials at all).
    Some(boundary(hi / 2, hi, |m| !extra(m)) + 1)
}

/// The largest `x` in `lo..hi` for which `holds`, given that it holds at `lo`, not at
/// `hi`, and switches once (neither end is evaluated).
pub(crate) fn boundary(mut lo: u64, mut hi: u64, holds: impl Fn(u64) -> bool) -> u64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests;
