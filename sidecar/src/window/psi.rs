//! Population Stability Index.

/// Floor for a bin's share so empty bins do not make the index infinite (the usual
/// practice; it caps one empty bin's contribution at a finite value).
const MIN_SHARE: f64 = 1e-4;

/// PSI = Σ (actualᵢ − expectedᵢ) · ln(actualᵢ / expectedᵢ) over bins, with `reference`
/// already normalised to shares and `counts` the window's counts per bin. 0 means the
/// same distribution; above ~0.25 is commonly read as a significant shift.
pub fn population_stability_index(reference: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    reference
        .iter()
        .zip(counts)
        .map(|(expected, count)| {
            let e = expected.max(MIN_SHARE);
            let a = (*count as f64 / total as f64).max(MIN_SHARE);
            (a - e) * (a / e).ln()
        })
        .sum()
}
