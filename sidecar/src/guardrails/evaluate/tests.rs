use std::time::Duration;

use super::*;
use crate::guardrails::thresholds::Thresholds;
use crate::window::{Outcome, SanityOutcome, Window};

fn rules(consecutive: u32) -> Rules {
    Rules {
        thresholds: Thresholds {
            max_p99: Some(Duration::from_millis(200)),
            ..Thresholds::default()
        },
        min_requests: 50,
        consecutive_breaches: consecutive,
    }
}

fn record(window: &Window, n: usize, error: bool, latency_ms: u64) {
    for _ in 0..n {
        window.record(&Outcome {
            latency: Duration::from_millis(latency_ms),
            error,
            sanity: SanityOutcome::NotApplicable,
            truncated: false,
            scores: &[],
        });
    }
}

#[tokio::test(start_paused = true)]
async fn below_the_minimum_nothing_is_decided_even_at_100_percent_errors() {
    let window = Window::new(Duration::from_secs(60), 12, None);
    let mut eval = Evaluator::new(Duration::from_secs(1));
    record(&window, 49, true, 10);
    assert_eq!(
        eval.judge(&window.snapshot(), &rules(1)),
        Verdict::Undecided {
            requests: 49,
            min_requests: 50
        }
    );
    // The 50th request makes the breach evaluable.
    record(&window, 1, true, 10);
    let verdict = eval.judge(&window.snapshot(), &rules(1));
    let Verdict::Breach {
        requests,
        violations,
    } = verdict
    else {
        panic!("expected a breach, got {verdict:?}");
    };
    assert_eq!(requests, 50);
    assert_eq!(violations[0].guardrail, Guardrail::ErrorRatio);
    assert_eq!(violations[0].observed, 1.0);
}

#[tokio::test(start_paused = true)]
async fn healthy_traffic_is_healthy_and_p99_breaks_on_slow_tail() {
    let window = Window::new(Duration::from_secs(60), 12, None);
    let mut eval = Evaluator::new(Duration::from_secs(1));
    record(&window, 100, false, 20);
    assert_eq!(
        eval.judge(&window.snapshot(), &rules(1)),
        Verdict::Healthy { requests: 100 }
    );
    // 2% of requests at 500 ms push p99 over 200 ms; the error ratio stays 0.
    record(&window, 3, false, 500);
    let Verdict::Breach { violations, .. } = eval.judge(&window.snapshot(), &rules(1)) else {
        panic!("p99 should breach");
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].guardrail, Guardrail::P99);
    assert!(violations[0].to_string().starts_with("p99 "));
}

#[tokio::test(start_paused = true)]
async fn consecutive_breaches_need_evaluations_an_interval_apart() {
    let window = Window::new(Duration::from_secs(60), 12, None);
    let mut eval = Evaluator::new(Duration::from_secs(1));
    record(&window, 60, true, 10);
    let r = rules(3);
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Suspect { streak: 1, .. }
    ));
    // Many evaluations within the same interval do not count as consecutive.
    for _ in 0..10 {
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(matches!(
            eval.judge(&window.snapshot(), &r),
            Verdict::Suspect { streak: 1, .. }
        ));
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Suspect { streak: 2, .. }
    ));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Breach { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_healthy_evaluation_resets_the_streak() {
    let window = Window::new(Duration::from_secs(2), 2, None);
    let mut eval = Evaluator::new(Duration::from_secs(1));
    let r = rules(2);
    record(&window, 60, true, 10);
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Suspect { streak: 1, .. }
    ));
    // The errors age out of the window; healthy traffic replaces them.
    tokio::time::advance(Duration::from_secs(3)).await;
    record(&window, 60, false, 10);
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Healthy { .. }
    ));
    record(&window, 60, true, 10);
    assert!(matches!(
        eval.judge(&window.snapshot(), &r),
        Verdict::Suspect { streak: 1, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn noisy_latency_just_under_the_limit_never_breaches() {
    let window = Window::new(Duration::from_secs(10), 10, None);
    let mut eval = Evaluator::new(Duration::from_secs(1));
    let r = rules(1);
    // Ten simulated minutes of latencies spread 20..190 ms (limit 200 ms).
    for step in 0..6000u64 {
        record(&window, 1, false, 20 + (step * 37) % 171);
        tokio::time::advance(Duration::from_millis(100)).await;
        let verdict = eval.judge(&window.snapshot(), &r);
        assert!(
            matches!(verdict, Verdict::Healthy { .. } | Verdict::Undecided { .. }),
            "false positive at step {step}: {verdict:?}"
        );
    }
}

#[test]
fn describe_lists_the_numbers() {
    let v = [Violation {
        guardrail: Guardrail::ErrorRatio,
        observed: 0.5,
        limit: 0.05,
    }];
    assert_eq!(
        Verdict::describe(&v, 120, 60.0),
        "error_ratio 0.5000 > 0.0500 over 120 requests in the last 60.0s"
    );
}
