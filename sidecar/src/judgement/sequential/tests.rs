use super::*;

#[test]
fn total_failure_is_a_breach_within_a_few_requests_and_never_healthy() {
    let alpha = 0.01 / 5.0 * 0.75;
    let first = (1..=20)
        .find(|&n| rejects(Side::Above, n, n, 0.05, alpha))
        .expect("decides");
    assert!(first <= 4, "total failure took {first} requests");
    assert!(!rejects(Side::Below, 1000, 1000, 0.05, 0.05));
}

#[test]
fn a_rate_under_the_limit_is_never_a_breach_and_a_perfect_run_becomes_healthy() {
    for n in [10, 100, 1_000, 100_000] {
        let k = n * 2 / 100; // 2% against a 5% limit
        assert!(!rejects(Side::Above, n, k, 0.05, 0.001), "n={n}");
    }
    let healthy = (1..=1000)
        .find(|&n| rejects(Side::Below, n, 0, 0.05, 0.05))
        .expect("a perfect run becomes healthy");
    assert!((50..=200).contains(&healthy), "took {healthy}");
}

#[test]
fn more_events_never_make_a_verdict_healthier() {
    for n in [20u64, 200, 2_000] {
        let mut last_above = f64::NEG_INFINITY;
        let mut last_below = f64::INFINITY;
        for k in 0..=n {
            let above = log_mixture(Side::Above, n, k, 0.05);
            let below = log_mixture(Side::Below, n, k, 0.05);
            assert!(above >= last_above - 1e-9, "n={n} k={k}");
            assert!(below <= last_below + 1e-9, "n={n} k={k}");
            (last_above, last_below) = (above, below);
        }
    }
}

#[test]
fn bounds_bracket_the_observed_rate_and_shrink_with_data() {
    let (lo_small, hi_small) = (lower_bound(100, 10, 0.01), upper_bound(100, 10, 0.01));
    let (lo_big, hi_big) = (
        lower_bound(10_000, 1_000, 0.01),
        upper_bound(10_000, 1_000, 0.01),
    );
    assert!(lo_small < 0.1 && 0.1 < hi_small, "{lo_small} {hi_small}");
    assert!(lo_small < lo_big && lo_big < 0.1 && 0.1 < hi_big && hi_big < hi_small);
    // The bound is exactly where the test flips.
    assert!(rejects(Side::Above, 10_000, 1_000, lo_big * 0.999, 0.01));
    assert!(!rejects(Side::Above, 10_000, 1_000, lo_big * 1.001, 0.01));
    assert_eq!(lower_bound(50, 0, 0.01), 0.0);
    assert_eq!(upper_bound(50, 50, 0.01), 1.0);
}

#[test]
fn edges_of_the_null_are_handled() {
    assert!(rejects(Side::Above, 1, 1, 0.0, 1e-9));
    assert!(!rejects(Side::Above, 100, 0, 0.0, 0.5));
    assert!(!rejects(Side::Below, 100, 0, 0.0, 0.5));
    assert!(!rejects(Side::Above, 100, 100, 1.0, 0.5));
}

#[test]
fn more_needed_points_at_the_decision() {
    let n = more_needed(Side::Below, 10, 0, 0.05, 0.05).expect("a perfect run decides");
    assert!(rejects(Side::Below, 10 + n, 0, 0.05, 0.05));
    assert!(!rejects(Side::Below, 10 + n - 1, 0, 0.05, 0.05));
    assert_eq!(more_needed(Side::Above, 100, 1, 0.05, 0.01), None);
}

#[test]
fn the_shortcut_agrees_with_the_full_computation() {
    for n in [1u64, 7, 50, 400] {
        for k in 0..=n {
            for p0 in [0.01, 0.05, 0.3] {
                for side in [Side::Above, Side::Below] {
                    let full = log_mixture(side, n, k, p0) >= threshold(0.01);
                    assert_eq!(
                        rejects(side, n, k, p0, 0.01),
                        full,
                        "{side:?} n={n} k={k} p0={p0}"
                    );
                }
            }
        }
    }
}
