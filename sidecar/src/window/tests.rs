use std::time::Duration;

use super::*;

fn ok(ms: u64) -> Outcome<'static> {
    Outcome {
        latency: Duration::from_millis(ms),
        error: false,
        sanity: SanityOutcome::NotApplicable,
        truncated: false,
        scores: &[],
    }
}

fn oracle(sorted: &[u64], q: f64) -> f64 {
    // Nearest-rank percentile: the value at rank ceil(q * n).
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

#[tokio::test(start_paused = true)]
async fn counts_are_exact_and_rotate_out() {
    let w = Window::new(Duration::from_secs(10), 5, None);
    for i in 0..10 {
        w.record(&Outcome {
            error: i % 5 == 0,
            ..ok(10)
        });
    }
    let s = w.snapshot();
    assert_eq!((s.requests, s.errors), (10, 2));
    assert!((s.error_ratio - 0.2).abs() < 1e-12);

    // 4 s later (two sub-windows on) the first records are still inside the window.
    tokio::time::advance(Duration::from_secs(4)).await;
    w.record(&Outcome {
        error: true,
        ..ok(10)
    });
    let s = w.snapshot();
    assert_eq!((s.requests, s.errors), (11, 3));

    // At 10 s the first sub-window (0..2 s) has rotated out; the one at 4 s remains.
    tokio::time::advance(Duration::from_secs(6)).await;
    let s = w.snapshot();
    assert_eq!((s.requests, s.errors), (1, 1));
    assert_eq!(s.window_seconds, 8.0);

    // After a whole quiet window nothing is left.
    tokio::time::advance(Duration::from_secs(10)).await;
    let s = w.snapshot();
    assert_eq!((s.requests, s.errors, s.error_ratio), (0, 0, 0.0));
    assert_eq!(s.latency_p99_seconds, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_reused_slot_forgets_its_old_sub_window() {
    let w = Window::new(Duration::from_secs(4), 4, None);
    w.record(&ok(1));
    // 4 s later the same slot index comes round again: the old record must be gone.
    tokio::time::advance(Duration::from_secs(4)).await;
    w.record(&ok(1));
    w.record(&ok(1));
    assert_eq!(w.snapshot().requests, 2);
}

#[tokio::test(start_paused = true)]
async fn percentiles_match_a_sorted_oracle_within_one_percent() {
    let w = Window::new(Duration::from_secs(60), 12, None);
    // A deterministic spread over 0.2 ms .. ~2 s with a heavy tail, across sub-windows.
    let mut values: Vec<u64> = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..5000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let micros = 200 + (x % 20_000) + if i % 50 == 0 { x % 2_000_000 } else { 0 };
        values.push(micros);
        w.record(&Outcome {
            latency: Duration::from_micros(micros),
            ..ok(0)
        });
        if i % 500 == 0 {
            tokio::time::advance(Duration::from_secs(2)).await;
        }
    }
    values.sort_unstable();
    let s = w.snapshot();
    assert_eq!(s.requests, 5000);
    for (q, got) in [
        (0.50, s.latency_p50_seconds),
        (0.95, s.latency_p95_seconds),
        (0.99, s.latency_p99_seconds),
    ] {
        let want = oracle(&values, q) / 1e6;
        let rel = (got - want).abs() / want;
        assert!(
            rel <= 0.01,
            "p{q}: window {got}s vs oracle {want}s ({rel:.4})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn sanity_and_scores_feed_ratio_and_psi() {
    let edges = [0.5];
    let reference = [1.0, 1.0];
    let w = Window::new(Duration::from_secs(60), 6, Some((&edges, &reference)));
    assert_eq!(w.snapshot().psi, None);
    for i in 0..8 {
        let sanity = if i < 2 {
            SanityOutcome::Failed
        } else {
            SanityOutcome::Passed
        };
        w.record(&Outcome {
            sanity,
            scores: &[0.25, 0.75],
            ..ok(5)
        });
    }
    w.record(&Outcome {
        sanity: SanityOutcome::Unchecked,
        ..ok(5)
    });
    let s = w.snapshot();
    assert_eq!(
        (s.sanity_checked, s.sanity_failures, s.sanity_unchecked),
        (8, 2, 1)
    );
    assert!((s.sanity_failure_ratio - 0.25).abs() < 1e-12);
    assert_eq!(s.scores, 16);
    assert!(
        s.psi.expect("scores seen").abs() < 1e-12,
        "same shape: PSI 0"
    );

    // All later scores land in the upper bin: the distribution shifts, PSI grows.
    for _ in 0..200 {
        w.record(&Outcome {
            scores: &[0.9],
            ..ok(5)
        });
    }
    assert!(w.snapshot().psi.expect("scores") > 0.25);
}

#[test]
fn psi_matches_the_textbook_formula() {
    let reference = [0.25, 0.25, 0.5];
    let counts = [50, 25, 25];
    let want =
        (0.5f64 - 0.25) * (0.5f64 / 0.25).ln() + 0.0 + (0.25f64 - 0.5) * (0.25f64 / 0.5).ln();
    assert!((population_stability_index(&reference, &counts) - want).abs() < 1e-12);
}

#[tokio::test(start_paused = true)]
async fn completion_wakes_the_evaluator() {
    let w = std::sync::Arc::new(Window::new(Duration::from_secs(60), 6, None));
    let waiter = {
        let w = w.clone();
        tokio::spawn(async move {
            w.completed().await;
            w.snapshot().requests
        })
    };
    tokio::task::yield_now().await;
    w.record(&ok(1));
    assert_eq!(waiter.await.expect("evaluator task"), 1);
    assert_eq!(w.completions(), 1);
}
