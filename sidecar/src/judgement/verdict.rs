//! The verdict of one revision at one instant, from the step's evidence: pure (no
//! I/O, no clock), so the loop, `/guardrails`, the tests and the simulation harness run
//! exactly this code.
//!
//! Every guardrail is a test that says **breach**, **healthy** or **undecided**, or is
//! **skipped** (a relative guardrail without a baseline), with the numbers behind it.
//! The false-rollback budget α of a step is split equally over the enabled guardrails;
//! each Bernoulli guardrail spends ¾ of its share on the step's cumulative evidence and
//! ¼ on recent evidence (tests started at each checkpoint, the j-th spending
//! α/(j(j+1)), which sums to the share: a union bound, as in Lorden's 1971 CUSUM
//! analysis), so a canary that turns bad late in a long step is still caught quickly.
//! "Healthy" claims are tested at the false-promotion rate β; promotion needs every
//! guardrail healthy (or skipped), so β is not split.

use std::{fmt, time::Duration};

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{
    sequential::{self, Side},
    summary::Summary,
};
use crate::guardrails::thresholds::Thresholds;

/// "p99 ≤ maxP99" is tested as "at most 1% of requests are slower than maxP99".
pub const P99_SHARE: f64 = 0.01;

/// One guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guardrail {
    ErrorRatio,
    SanityFailureRatio,
    P99,
    Psi,
    ErrorRatioIncrease,
    LatencyRegression,
}

impl Guardrail {
    pub const ALL: [Guardrail; 6] = [
        Self::ErrorRatio,
        Self::SanityFailureRatio,
        Self::P99,
        Self::Psi,
        Self::ErrorRatioIncrease,
        Self::LatencyRegression,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRatio => "error_ratio",
            Self::SanityFailureRatio => "sanity_failure_ratio",
            Self::P99 => "p99",
            Self::Psi => "psi",
            Self::ErrorRatioIncrease => "error_ratio_increase",
            Self::LatencyRegression => "latency_regression",
        }
    }
}

/// What a test concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Breach,
    Healthy,
    Undecided,
    Skipped,
}

impl State {
    pub const ALL: [State; 4] = [Self::Breach, Self::Healthy, Self::Undecided, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Breach => "breach",
            Self::Healthy => "healthy",
            Self::Undecided => "undecided",
            Self::Skipped => "skipped",
        }
    }
}

/// One guardrail's verdict with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub guardrail: Guardrail,
    pub state: State,
    /// Trials the test used (requests, checked responses, timed requests, scores).
    pub requests: u64,
    /// The observed value (a ratio, a share, a PSI, a ratio difference).
    pub observed: f64,
    pub limit: f64,
    /// The stable revision's value over the same period (relative guardrails).
    pub baseline: Option<f64>,
    /// The test's bound: the lower confidence bound on a breach, the upper one when
    /// healthy (for PSI, the value net of sampling noise).
    pub bound: Option<f64>,
    /// The false-alarm probability this test was run at.
    pub alpha: f64,
    /// While undecided: about how many more trials at the observed rate decide.
    pub more_needed: Option<u64>,
    /// Which evidence decided, or why it was skipped.
    pub note: String,
}

impl Finding {
    /// A finding without bound, baseline or note yet.
    fn new(
        guardrail: Guardrail,
        state: State,
        requests: u64,
        observed: f64,
        limit: f64,
        alpha: f64,
    ) -> Self {
        Self {
            guardrail,
            state,
            requests,
            observed,
            limit,
            baseline: None,
            bound: None,
            alpha,
            more_needed: None,
            note: String::new(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: observed {:.4} vs limit {:.4} over {} ",
            self.guardrail.as_str(),
            self.state.as_str(),
            self.observed,
            self.limit,
            self.requests
        )?;
        if let Some(b) = self.baseline {
            write!(f, "(stable {b:.4}) ")?;
        }
        if let Some(b) = self.bound {
            write!(f, "bound {b:.4} ")?;
        }
        write!(f, "at alpha {:.2e}", self.alpha)?;
        if let Some(n) = self.more_needed.filter(|_| self.state == State::Undecided) {
            write!(f, ", about {n} more needed")?;
        }
        if !self.note.is_empty() {
            write!(f, "; {}", self.note)?;
        }
        Ok(())
    }
}

/// The whole verdict of a revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    pub state: State,
    pub findings: Vec<Finding>,
}

impl Judgement {
    /// The findings in `state`.
    pub fn with_state(&self, state: State) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.state == state)
    }

    /// One line for annotations, Events and logs: the deciding findings first.
    pub fn describe(&self) -> String {
        let mut deciding: Vec<String> = self
            .with_state(self.state)
            .map(ToString::to_string)
            .collect();
        if deciding.is_empty() {
            deciding = self.findings.iter().map(ToString::to_string).collect();
        }
        deciding.join("; ")
    }
}

/// The error rates a step may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Probability of rolling back a canary whose every guardrail holds, per step.
    pub false_rollback: f64,
    /// Probability of calling a guardrail healthy when it is broken.
    pub false_promotion: f64,
    /// No breach or healthy verdict on fewer trials than this (a small floor: the
    /// tests alone are what make a verdict safe).
    pub min_requests: u64,
}

/// Bernoulli counts `(trials, events)` of the three rate guardrails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub errors: (u64, u64),
    pub sanity: (u64, u64),
    pub slow: (u64, u64),
}

impl Counts {
    pub fn of(summary: &Summary, thresholds: &Thresholds) -> Counts {
        let slow = thresholds.max_p99.map_or((summary.timed(), 0), |limit| {
            let micros = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
            (summary.timed(), summary.slower_than(micros))
        });
        Counts {
            errors: (summary.requests, summary.errors),
            sanity: (summary.sanity_checked, summary.sanity_failures),
            slow,
        }
    }

    fn get(&self, g: Guardrail) -> (u64, u64) {
        match g {
            Guardrail::SanityFailureRatio => self.sanity,
            Guardrail::P99 => self.slow,
            _ => self.errors,
        }
    }

    fn minus(&self, base: &Counts, g: Guardrail) -> (u64, u64) {
        let (n, k) = self.get(g);
        let (bn, bk) = base.get(g);
        (n.saturating_sub(bn), k.saturating_sub(bk))
    }
}

/// Cumulative counts of the step at an earlier instant: where a recent test starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checkpoint {
    /// 0 for the first checkpoint of the step, then 1, 2, …: sets the test's share.
    pub index: u64,
    /// Time since the step started.
    pub at: Duration,
    pub counts: Counts,
}

/// What the judge sees.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The canary revision's traffic since the step started (all its pods).
    pub canary: &'a Summary,
    /// The stable revision's traffic over the same period, if known.
    pub stable: Option<&'a Summary>,
    /// Earlier checkpoints of the canary's counts (oldest first).
    pub checkpoints: &'a [Checkpoint],
    /// Time since the step started.
    pub elapsed: Duration,
    /// Normalised reference shares of the score bins (PSI), if configured.
    pub psi_reference: Option<&'a [f64]>,
}

/// The guardrails that are on: a limit is set (and, for PSI, scores are configured).
pub fn enabled(thresholds: &Thresholds, psi_configured: bool) -> Vec<Guardrail> {
    Guardrail::ALL
        .into_iter()
        .filter(|g| match g {
            Guardrail::ErrorRatio => thresholds.max_error_ratio.is_some(),
            Guardrail::SanityFailureRatio => thresholds.max_sanity_failure_ratio.is_some(),
            Guardrail::P99 => thresholds.max_p99.is_some(),
            Guardrail::Psi => psi_configured && thresholds.max_psi.is_some(),
            Guardrail::ErrorRatioIncrease => thresholds.max_error_ratio_increase.is_some(),
            Guardrail::LatencyRegression => thresholds.max_slow_share_vs_stable.is_some(),
        })
        .collect()
}

/// How much of a finding's explanation to compute. The bounds and "about N more
/// needed" of the rate guardrails take bisections that decide nothing: the loop wants
/// them (they are what users read), the simulation, which only counts states, does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Explained,
    StateOnly,
}

/// Judges `evidence` against `thresholds` within `budget`, every number explained.
pub fn judge(evidence: &Evidence<'_>, thresholds: &Thresholds, budget: &Budget) -> Judgement {
    judge_with(evidence, thresholds, budget, Detail::Explained)
}

/// [`judge`], with `detail` choosing whether the rate guardrails' explanatory bounds
/// are computed; states are the same either way (tested).
pub fn judge_with(
    evidence: &Evidence<'_>,
    thresholds: &Thresholds,
    budget: &Budget,
    detail: Detail,
) -> Judgement {
    let on = enabled(thresholds, evidence.psi_reference.is_some());
    let share = budget.false_rollback / on.len().max(1) as f64;
    let now = Counts::of(evidence.canary, thresholds);
    let findings: Vec<Finding> = on
        .iter()
        .map(|&g| match g {
            Guardrail::ErrorRatio | Guardrail::SanityFailureRatio | Guardrail::P99 => {
                let limit = match g {
                    Guardrail::ErrorRatio => thresholds.max_error_ratio,
                    Guardrail::SanityFailureRatio => thresholds.max_sanity_failure_ratio,
                    _ => Some(P99_SHARE),
                }
                .unwrap_or(1.0);
                rate(g, &now, limit, evidence, share, budget, detail)
            }
            Guardrail::Psi => psi(
                evidence,
                thresholds.max_psi.unwrap_or(f64::MAX),
                share,
                budget,
            ),
            Guardrail::ErrorRatioIncrease => error_increase(
                evidence,
                thresholds.max_error_ratio_increase.unwrap_or(1.0),
                share,
                budget,
            ),
            Guardrail::LatencyRegression => latency_regression(
                evidence,
                thresholds.max_slow_share_vs_stable.unwrap_or(1.0),
                share,
                budget,
            ),
        })
        .collect();
    let state = if findings.iter().any(|f| f.state == State::Breach) {
        State::Breach
    } else if findings
        .iter()
        .all(|f| matches!(f.state, State::Healthy | State::Skipped))
        && findings.iter().any(|f| f.state == State::Healthy)
    {
        State::Healthy
    } else {
        State::Undecided
    };
    Judgement { state, findings }
}

fn ratio(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// A rate guardrail: cumulative test, then recent tests, then the healthy test.
fn rate(
    g: Guardrail,
    now: &Counts,
    limit: f64,
    evidence: &Evidence<'_>,
    share: f64,
    budget: &Budget,
    detail: Detail,
) -> Finding {
    let explain = detail == Detail::Explained;
    let (n, k) = now.get(g);
    let cumulative_alpha = share * 0.75;
    let mut f = Finding::new(g, State::Undecided, n, ratio(k, n), limit, cumulative_alpha);
    if g == Guardrail::P99 {
        f.note = format!("share of requests slower than the p99 limit (limit {P99_SHARE})");
    }
    // Traffic the sanity checks do not understand (a custom protocol, non-model
    // paths, bodies over the tee) gives this guardrail nothing to judge: like a
    // relative guardrail without a baseline it is skipped, never what blocks a
    // promotion on its own; the other guardrails still judge every request.
    if g == Guardrail::SanityFailureRatio
        && n == 0
        && evidence.canary.requests >= budget.min_requests
    {
        f.state = State::Skipped;
        f.note = format!(
            "none of {} requests had a response the sanity checks could read",
            evidence.canary.requests
        );
        return f;
    }
    if n < budget.min_requests {
        f.more_needed = Some(budget.min_requests - n);
        f.note = format!("below the floor of {} requests", budget.min_requests);
        return f;
    }
    if sequential::rejects(Side::Above, n, k, limit, cumulative_alpha) {
        f.state = State::Breach;
        f.bound = explain.then(|| sequential::lower_bound(n, k, cumulative_alpha));
        f.note = "over the whole step".into();
        return f;
    }
    let recent_share = share * 0.25;
    for c in evidence.checkpoints {
        let (rn, rk) = now.minus(&c.counts, g);
        let j = (c.index + 1) as f64;
        let alpha = recent_share / (j * (j + 1.0));
        if rn >= budget.min_requests && sequential::rejects(Side::Above, rn, rk, limit, alpha) {
            f.state = State::Breach;
            f.requests = rn;
            f.observed = ratio(rk, rn);
            f.alpha = alpha;
            f.bound = explain.then(|| sequential::lower_bound(rn, rk, alpha));
            f.note = format!(
                "over the last {:.1}s",
                evidence.elapsed.saturating_sub(c.at).as_secs_f64()
            );
            return f;
        }
    }
    if sequential::rejects(Side::Below, n, k, limit, budget.false_promotion) {
        f.state = State::Healthy;
        f.alpha = budget.false_promotion;
        f.bound = explain.then(|| sequential::upper_bound(n, k, budget.false_promotion));
        return f;
    }
    if !explain {
        return f;
    }
    f.more_needed = [
        sequential::more_needed(Side::Above, n, k, limit, cumulative_alpha),
        sequential::more_needed(Side::Below, n, k, limit, budget.false_promotion),
    ]
    .into_iter()
    .flatten()
    .min();
    f
}

/// Canary error ratio minus the stable's, from time-uniform bounds of both: a breach
/// when even the canary's lower bound exceeds the stable's upper bound by more than
/// the allowed increase (each bound at half the share: a union bound).
fn error_increase(evidence: &Evidence<'_>, limit: f64, share: f64, budget: &Budget) -> Finding {
    let c = (evidence.canary.requests, evidence.canary.errors);
    let mut f = Finding::new(
        Guardrail::ErrorRatioIncrease,
        State::Skipped,
        c.0,
        ratio(c.1, c.0),
        limit,
        share,
    );
    let Some(stable) = evidence.stable.filter(|s| s.requests > 0) else {
        f.note = "no baseline: the stable revision has no data for this step".into();
        return f;
    };
    let s = (stable.requests, stable.errors);
    let baseline = ratio(s.1, s.0);
    f.baseline = Some(baseline);
    f.observed = ratio(c.1, c.0) - baseline;
    f.state = State::Undecided;
    if c.0 < budget.min_requests {
        f.note = format!("below the floor of {} requests", budget.min_requests);
        return f;
    }
    let half = share / 2.0;
    let gap = sequential::lower_bound(c.0, c.1, half) - sequential::upper_bound(s.0, s.1, half);
    if gap > limit {
        f.state = State::Breach;
        f.bound = Some(gap);
        return f;
    }
    let b = budget.false_promotion / 2.0;
    let gap_up = sequential::upper_bound(c.0, c.1, b) - sequential::lower_bound(s.0, s.1, b);
    if gap_up < limit {
        f.state = State::Healthy;
        f.alpha = budget.false_promotion;
        f.bound = Some(gap_up);
    } else {
        f.bound = Some(gap_up);
    }
    f
}

/// The largest `k` in `0..=n` for which `pred(k)` holds, with `pred` true up to some
/// point and false after; `None` when it is false at 0.
fn last_true(n: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
    pred(0).then(|| sequential::boundary(0, n + 1, pred))
}

/// The share of canary requests slower than the stable's p99. The stable's p99 is
/// itself estimated, so a breach counts canary requests above a time-uniform *upper*
/// bound of the stable's p99 (fewer exceedances than the truth, with probability
/// 1−α/2), and a healthy claim counts them above a *lower* bound: the moving threshold
/// never helps a false verdict. CPU starvation that slows both revisions alike moves
/// the stable's p99 too, so it does not trip this guardrail.
fn latency_regression(evidence: &Evidence<'_>, limit: f64, share: f64, budget: &Budget) -> Finding {
    let canary = evidence.canary;
    let n = canary.timed();
    let mut f = Finding::new(
        Guardrail::LatencyRegression,
        State::Skipped,
        n,
        0.0,
        limit,
        share,
    );
    let Some(stable) = evidence.stable.filter(|s| s.timed() > 0) else {
        f.note = "no baseline: the stable revision has no timed requests for this step".into();
        return f;
    };
    let m = stable.timed();
    let p99 = stable.latency.value_at_quantile(0.99);
    f.baseline = Some(p99 as f64 / 1e6);
    f.observed = ratio(canary.slower_than(p99), n);
    let half = share / 2.0;
    // Largest count of stable requests above a value that still shows P(slower) < 1%.
    let upper = last_true(m, |k| {
        sequential::rejects(Side::Below, m, k, P99_SHARE, half)
    });
    let Some(k_hi) = upper else {
        let more = sequential::more_needed(Side::Below, m, 0, P99_SHARE, half);
        f.note = format!(
            "baseline too small: the stable revision has {m} timed requests, about {} more needed to bound its p99",
            more.unwrap_or(0)
        );
        return f;
    };
    f.state = State::Undecided;
    if n < budget.min_requests {
        f.note = format!("below the floor of {} requests", budget.min_requests);
        return f;
    }
    let q = 1.0 - k_hi as f64 / m as f64;
    let hi_threshold = stable.latency.value_at_quantile(q);
    let slow_hi = canary.slower_than(hi_threshold);
    if sequential::rejects(Side::Above, n, slow_hi, limit, half) {
        f.state = State::Breach;
        f.observed = ratio(slow_hi, n);
        f.bound = Some(sequential::lower_bound(n, slow_hi, half));
        f.note = format!(
            "{slow_hi} of {n} canary requests slower than {:.1}ms (upper bound of the stable p99)",
            hi_threshold as f64 / 1e3
        );
        return f;
    }
    let b = budget.false_promotion / 2.0;
    // Smallest count above a value that shows P(slower) > 1%: that value is below the
    // stable's true p99 (with probability 1-b).
    let lower = last_true(m, |k| !sequential::rejects(Side::Above, m, k, P99_SHARE, b))
        .map(|k| k + 1)
        .filter(|k| *k <= m);
    if let Some(k_lo) = lower {
        let q = 1.0 - k_lo as f64 / m as f64;
        let lo_value = stable.latency.value_at_quantile(q);
        let lo_threshold = stable.latency.lowest_equivalent(lo_value).saturating_sub(1);
        let slow_lo = canary.slower_than(lo_threshold);
        if sequential::rejects(Side::Below, n, slow_lo, limit, b) {
            f.state = State::Healthy;
            f.alpha = budget.false_promotion;
            f.bound = Some(sequential::upper_bound(n, slow_lo, b));
            return f;
        }
    }
    f.more_needed = sequential::more_needed(Side::Below, n, slow_hi, limit, b);
    f
}

/// PSI of the canary's scores against the reference. Its own evidence rule: under no
/// drift `n·PSI` is asymptotically χ²(bins−1) (PSI is the symmetrised Kullback–Leibler
/// divergence, whose first-order term is the G-test statistic / 2n), so a breach needs
/// PSI above the limit by more than the χ² noise at level αᵢ; αᵢ is spent over
/// doubling sample sizes (α/((i+1)(i+2)) from `n0·2^i` scores) since the looks repeat.
fn psi(evidence: &Evidence<'_>, limit: f64, share: f64, budget: &Budget) -> Finding {
    let counts = &evidence.canary.score_bins;
    let n = evidence.canary.scores();
    let bins = counts.len().max(2);
    let n0 = (10 * bins as u64).max(50);
    let mut f = Finding::new(Guardrail::Psi, State::Undecided, n, 0.0, limit, share);
    let Some(reference) = evidence.psi_reference else {
        f.state = State::Skipped;
        f.note = "no score reference configured".into();
        return f;
    };
    if n < n0 {
        f.more_needed = Some(n0 - n);
        f.note = format!("PSI needs at least {n0} scores");
        return f;
    }
    let value = crate::window::population_stability_index(reference, counts);
    f.observed = value;
    let epoch = (n as f64 / n0 as f64).log2().floor().max(0.0);
    let spend = |a: f64| a / ((epoch + 1.0) * (epoch + 2.0));
    let noise = |a: f64| {
        ChiSquared::new((bins - 1) as f64)
            .map(|d| d.inverse_cdf(1.0 - a) / n as f64)
            .unwrap_or(f64::INFINITY)
    };
    let alpha = spend(share);
    let net = value - noise(alpha);
    f.alpha = alpha;
    if net > limit {
        f.state = State::Breach;
        f.bound = Some(net);
        f.note = "PSI above the limit by more than its sampling noise".into();
        return f;
    }
    let beta = spend(budget.false_promotion);
    let high = value + noise(beta);
    if high < limit {
        f.state = State::Healthy;
        f.alpha = beta;
        f.bound = Some(high);
    }
    f
}

#[cfg(test)]
mod tests;
