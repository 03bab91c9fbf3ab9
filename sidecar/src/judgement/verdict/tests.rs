use std::time::Duration;

use super::*;

fn budget() -> Budget {
    Budget {
        false_rollback: 0.01,
        false_promotion: 0.05,
        min_requests: 5,
    }
}

fn summary(requests: u64, errors: u64, latency_ms: &[(u64, u64)]) -> Summary {
    let mut s = Summary::new(0);
    s.requests = requests;
    s.errors = errors;
    for (ms, count) in latency_ms {
        s.latency.record_n(ms * 1000, *count).expect("in range");
    }
    s
}

fn judge_of(canary: &Summary, stable: Option<&Summary>, t: &Thresholds) -> Judgement {
    judge(
        &Evidence {
            canary,
            stable,
            checkpoints: &[],
            elapsed: Duration::from_secs(60),
            psi_reference: None,
        },
        t,
        &budget(),
    )
}

fn finding(j: &Judgement, g: Guardrail) -> &Finding {
    j.findings
        .iter()
        .find(|f| f.guardrail == g)
        .expect("enabled")
}

#[test]
fn total_failure_breaches_within_ten_requests_and_says_why() {
    let t = Thresholds::default();
    let n = (1..=20)
        .find(|&n| judge_of(&summary(n, n, &[]), None, &t).state == State::Breach)
        .expect("breaches");
    assert!(n <= 10, "took {n}");
    let j = judge_of(&summary(n, n, &[]), None, &t);
    let f = finding(&j, Guardrail::ErrorRatio);
    assert_eq!(f.state, State::Breach);
    assert!(f.bound.expect("bound") > 0.05);
    assert!(
        j.describe().contains("error_ratio breach"),
        "{}",
        j.describe()
    );
}

#[test]
fn without_a_baseline_relative_guardrails_are_skipped_and_do_not_block_health() {
    let t = Thresholds::default();
    let j = judge_of(&summary(400, 0, &[(10, 400)]), None, &t);
    assert_eq!(finding(&j, Guardrail::ErrorRatio).state, State::Healthy);
    assert_eq!(
        finding(&j, Guardrail::ErrorRatioIncrease).state,
        State::Skipped
    );
    assert_eq!(
        finding(&j, Guardrail::LatencyRegression).state,
        State::Skipped
    );
    // No response the sanity checks could read (a custom protocol): nothing to judge,
    // skipped with a note, like a relative guardrail without a baseline.
    let sanity = finding(&j, Guardrail::SanityFailureRatio);
    assert_eq!(sanity.state, State::Skipped);
    assert!(
        sanity.note.contains("none of 400 requests"),
        "{}",
        sanity.note
    );
    assert_eq!(j.state, State::Healthy);
}

#[test]
fn sanity_with_some_checked_responses_needs_its_own_evidence() {
    let t = Thresholds::default();
    let mut s = summary(400, 0, &[(10, 400)]);
    s.sanity_checked = 3;
    let j = judge_of(&s, None, &t);
    let sanity = finding(&j, Guardrail::SanityFailureRatio);
    assert_eq!(sanity.state, State::Undecided);
    assert_eq!(sanity.more_needed, Some(2));
    assert_eq!(j.state, State::Undecided);
    // Below the request floor nothing is skipped yet either.
    let j = judge_of(&summary(3, 0, &[(10, 3)]), None, &t);
    assert_eq!(
        finding(&j, Guardrail::SanityFailureRatio).state,
        State::Undecided
    );
}

#[test]
fn a_regression_under_the_absolute_limit_breaches_against_the_stable() {
    let t = Thresholds {
        max_sanity_failure_ratio: None,
        ..Thresholds::default()
    };
    // Stable 0.5%, canary 4%: under the 5% limit, +3.5 points over the stable.
    let stable = summary(40_000, 200, &[(10, 40_000)]);
    let canary = summary(3_000, 120, &[(10, 3_000)]);
    let j = judge_of(&canary, Some(&stable), &t);
    assert_ne!(finding(&j, Guardrail::ErrorRatio).state, State::Breach);
    assert_eq!(
        finding(&j, Guardrail::ErrorRatioIncrease).state,
        State::Breach
    );
    assert_eq!(j.state, State::Breach);
    // The same canary next to a stable at 3.5% is not a regression.
    let stable = summary(40_000, 1_400, &[(10, 40_000)]);
    let j = judge_of(&canary, Some(&stable), &t);
    assert_ne!(
        finding(&j, Guardrail::ErrorRatioIncrease).state,
        State::Breach
    );
}

#[test]
fn both_revisions_slowed_alike_do_not_trip_the_latency_regression() {
    let t = Thresholds {
        max_sanity_failure_ratio: None,
        ..Thresholds::default()
    };
    // Same shape, both 5x slower than usual: 98% at 50 ms, 2% at 400 ms.
    let stable = summary(20_000, 0, &[(50, 19_600), (400, 400)]);
    let canary = summary(2_000, 0, &[(50, 1_960), (400, 40)]);
    let j = judge_of(&canary, Some(&stable), &t);
    assert_ne!(
        finding(&j, Guardrail::LatencyRegression).state,
        State::Breach
    );
    // A canary whose slowest 20% are slower than the stable's p99 is a regression.
    let canary = summary(2_000, 0, &[(50, 1_600), (900, 400)]);
    let j = judge_of(&canary, Some(&stable), &t);
    assert_eq!(
        finding(&j, Guardrail::LatencyRegression).state,
        State::Breach
    );
}

#[test]
fn recent_checkpoints_catch_a_late_failure_the_cumulative_test_dilutes() {
    let t = Thresholds {
        max_sanity_failure_ratio: None,
        ..Thresholds::default()
    };
    let healthy = summary(5_000, 50, &[]);
    let late = summary(5_030, 80, &[]); // 30 failures in a row after 5000 requests
    let cumulative = judge_of(&late, None, &t);
    assert_ne!(
        finding(&cumulative, Guardrail::ErrorRatio).state,
        State::Breach
    );
    let checkpoints: Vec<Checkpoint> = (0..60)
        .map(|i| Checkpoint {
            index: 3_000 + i,
            at: Duration::from_secs(3_000 + i),
            counts: Counts::of(&healthy, &t),
        })
        .collect();
    let j = judge(
        &Evidence {
            canary: &late,
            stable: None,
            checkpoints: &checkpoints,
            elapsed: Duration::from_secs(3_061),
            psi_reference: None,
        },
        &t,
        &budget(),
    );
    let f = finding(&j, Guardrail::ErrorRatio);
    assert_eq!(f.state, State::Breach, "{f}");
    assert!(f.note.contains("last"), "{}", f.note);
}

#[test]
fn p99_is_judged_as_the_share_of_requests_over_the_limit() {
    let t = Thresholds {
        max_p99: Some(Duration::from_millis(200)),
        max_sanity_failure_ratio: None,
        ..Thresholds::default()
    };
    let slow = summary(500, 0, &[(50, 400), (300, 100)]);
    assert_eq!(
        finding(&judge_of(&slow, None, &t), Guardrail::P99).state,
        State::Breach
    );
    let fine = summary(2_000, 0, &[(50, 2_000)]);
    assert_eq!(
        finding(&judge_of(&fine, None, &t), Guardrail::P99).state,
        State::Healthy
    );
}

#[test]
fn psi_needs_evidence_beyond_its_noise() {
    let t = Thresholds {
        max_sanity_failure_ratio: None,
        ..Thresholds::default()
    };
    let reference = [0.5, 0.5];
    let run = |bins: [u64; 2]| {
        let mut s = summary(bins[0] + bins[1], 0, &[]);
        s.score_bins = bins.to_vec();
        let j = judge(
            &Evidence {
                canary: &s,
                stable: None,
                checkpoints: &[],
                elapsed: Duration::from_secs(1),
                psi_reference: Some(&reference),
            },
            &t,
            &budget(),
        );
        finding(&j, Guardrail::Psi).state
    };
    assert_eq!(run([10, 10]), State::Undecided);
    assert_eq!(run([0, 400]), State::Breach);
    assert_eq!(run([1_000, 1_010]), State::Healthy);
}

#[test]
fn the_false_rollback_budget_is_split_over_enabled_guardrails() {
    let t = Thresholds::default();
    let j = judge_of(&summary(100, 1, &[]), None, &t);
    let on = j.findings.len() as f64;
    let f = finding(&j, Guardrail::ErrorRatio);
    assert!((f.alpha - 0.01 / on * 0.75).abs() < 1e-12, "{}", f.alpha);
}

#[test]
fn explanations_never_change_a_state() {
    let t = Thresholds::default();
    let checkpoints: Vec<Checkpoint> = Vec::new();
    for n in [0u64, 3, 5, 10, 40, 100, 400, 2000] {
        for k in [0u64, 1, 2, 5, 10, 20, 40, 100] {
            if k > n {
                continue;
            }
            let canary = summary(n, k, &[(10, n)]);
            let evidence = Evidence {
                canary: &canary,
                stable: None,
                checkpoints: &checkpoints,
                elapsed: Duration::from_secs(60),
                psi_reference: None,
            };
            let full = judge_with(&evidence, &t, &budget(), Detail::Explained);
            let lean = judge_with(&evidence, &t, &budget(), Detail::StateOnly);
            let states = |j: &Judgement| j.findings.iter().map(|f| f.state).collect::<Vec<_>>();
            assert_eq!(states(&full), states(&lean), "n={n} k={k}");
            assert_eq!(full.state, lean.state, "n={n} k={k}");
        }
    }
}
