//! Rollback end to end: real `guardrail-sidecar` processes in front of a switchable
//! upstream, judging a Knative canary in the API emulator and rolling it back.

mod guardrails_support;

use std::time::{Duration, SystemTime};

use guardrail_e2e::process::eventually;
use guardrails_support::{
    canary_at_25, load, load_parallel, metric, rolled_back, sidecar_at_25, wait_rolled_back,
    BackgroundLoad, Mode, Sidecar, CANARY, STABLE, SVC, TEST_CONFIG, WAIT,
};
use serde_json::json;

/// Breaks the canary with `mode`, sends exactly the minimum count, and checks the
/// rollback: traffic, annotations, Event, one write. Returns the time from the
/// response that made the breach evaluable to the accepted write.
async fn breaks_and_rolls_back(
    mode: Mode,
    annotations: serde_json::Value,
    config: &str,
    reason: &str,
) -> Duration {
    let (cluster, upstream) = canary_at_25(annotations, Mode::Healthy).await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, config, &[]);
    sidecar.wait_ready(25.0).await;
    upstream.set(mode);
    let client = reqwest::Client::new();
    load_parallel(&client, &sidecar.url(), 50).await;
    let evaluable = SystemTime::now();

    wait_rolled_back(&cluster).await;
    let writes = cluster.guardrail_writes("/services/m");
    assert_eq!(writes.len(), 1, "exactly one effective write: {writes:?}");
    let svc = cluster.service(SVC);
    let a = &svc["metadata"]["annotations"];
    assert_eq!(a["guardrail.dev/rolled-back-revision"], json!(CANARY));
    assert_eq!(a["guardrail.dev/quarantined-revisions"], json!(CANARY));
    let why = a["guardrail.dev/rollback-reason"].as_str().expect("reason");
    assert!(why.contains(reason) && why.contains("50 requests"), "{why}");
    assert!(a["guardrail.dev/rollback-time"].is_string());
    let events = eventually("the rollback Event", WAIT, || async {
        let e = cluster.events_for(SVC);
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events[0]["reason"], json!("CanaryRolledBack"));
    assert_eq!(events[0]["type"], json!("Warning"));
    assert!(events[0]["note"]
        .as_str()
        .is_some_and(|n| n.contains(CANARY) && n.contains(STABLE)));
    assert_eq!(
        sidecar
            .metric("guardrail_actions_total", "outcome=\"written\"")
            .await,
        1.0
    );
    // Traffic is still served by the sidecar after the rollback.
    upstream.set(Mode::Healthy);
    assert_eq!(load(&client, &sidecar.url(), 1).await, [200]);
    writes[0]
        .time
        .duration_since(evaluable)
        .unwrap_or(Duration::ZERO)
}

#[tokio::test]
async fn canary_failing_at_25_percent_is_rolled_back() {
    let took =
        breaks_and_rolls_back(Mode::Failing, json!({}), TEST_CONFIG, "error_ratio 1.0000").await;
    // A number for the report, not an assertion.
    eprintln!("breach evaluable -> accepted write: {took:?}");
}

#[tokio::test]
async fn canary_slow_p99_is_rolled_back() {
    breaks_and_rolls_back(
        Mode::Slow,
        json!({ "guardrail.dev/max-p99": "100ms" }),
        TEST_CONFIG,
        "p99 ",
    )
    .await;
}

#[tokio::test]
async fn canary_nan_outputs_are_rolled_back() {
    breaks_and_rolls_back(
        Mode::Nan,
        json!({}),
        TEST_CONFIG,
        "sanity_failure_ratio 1.0000",
    )
    .await;
}

#[tokio::test]
async fn canary_score_drift_is_rolled_back() {
    let config = format!(
        "{TEST_CONFIG}sanity:\n  score: {{ pointer: /predictions, edges: [0.5], reference: [1, 1] }}\n"
    );
    breaks_and_rolls_back(
        Mode::Drift,
        json!({ "guardrail.dev/max-psi": "0.2" }),
        &config,
        "psi ",
    )
    .await;
}

#[tokio::test]
async fn below_the_minimum_count_nothing_happens_and_the_next_request_decides() {
    let (cluster, _upstream, sidecar) = sidecar_at_25(Mode::Failing, CANARY, 25.0).await;
    let client = reqwest::Client::new();
    load(&client, &sidecar.url(), 49).await;
    let before = sidecar
        .metric("guardrail_evaluations_total", "verdict=\"undecided\"")
        .await;
    // Wait for evaluations that saw all 49 failures (periodic ones happen every second).
    eventually("more evaluations at 49 requests", WAIT, || async {
        (sidecar
            .metric("guardrail_evaluations_total", "verdict=\"undecided\"")
            .await
            >= before + 2.0)
            .then_some(())
    })
    .await;
    assert!(cluster.guardrail_writes("/services/m").is_empty());
    assert_eq!(
        sidecar
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await,
        0.0
    );
    load(&client, &sidecar.url(), 1).await;
    eventually("the 50th request decides", WAIT, || async {
        (cluster.traffic(SVC) == rolled_back()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_stable_revision_never_rolls_anything_back() {
    let (cluster, _upstream, sidecar) = sidecar_at_25(Mode::Failing, STABLE, 75.0).await;
    let client = reqwest::Client::new();
    load(&client, &sidecar.url(), 80).await;
    eventually(
        "breaching evaluations of the stable revision",
        WAIT,
        || async {
            (sidecar
                .metric("guardrail_evaluations_total", "verdict=\"breach\"")
                .await
                >= 3.0)
                .then_some(())
        },
    )
    .await;
    assert!(cluster.guardrail_writes("").is_empty());
    assert_eq!(
        cluster.traffic(SVC),
        [
            (STABLE.into(), 75, "previous".into()),
            ("@latest".into(), 25, String::new())
        ]
    );
    assert_eq!(
        sidecar.metric("guardrail_breached", "error_ratio").await,
        1.0
    );
}

#[tokio::test]
async fn dry_run_logs_instead_of_writing() {
    let (cluster, upstream) = canary_at_25(json!({}), Mode::Failing).await;
    let sidecar = Sidecar::start(
        &cluster,
        &upstream,
        SVC,
        CANARY,
        TEST_CONFIG,
        &["--dry-run"],
    );
    sidecar.wait_ready(25.0).await;
    load(&reqwest::Client::new(), &sidecar.url(), 50).await;
    eventually("a dry-run rollback", WAIT, || async {
        (sidecar
            .metric("guardrail_actions_total", "outcome=\"dry_run\"")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(cluster.guardrail_writes("").is_empty());
    assert_eq!(
        cluster.traffic(SVC)[1],
        ("@latest".into(), 25, String::new())
    );
}

#[tokio::test]
async fn a_healthy_but_noisy_canary_is_not_rolled_back() {
    // Latencies spread over 10..180 ms and 2% errors, under limits of 1 s and 5%. The
    // p99 limit leaves room for scheduling stalls: with 250 ms, parallel tests on a
    // 2-core machine pushed the p99 of ~60 requests to 253 ms now and then (the tight
    // latency margin is the 10-minute benchmark's job, not a test's).
    let (cluster, upstream) =
        canary_at_25(json!({ "guardrail.dev/max-p99": "1s" }), Mode::Noisy).await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]);
    sidecar.wait_ready(25.0).await;
    let _load: Vec<BackgroundLoad> = (0..8)
        .map(|_| BackgroundLoad::start(sidecar.url(), Duration::from_millis(5)))
        .collect();
    eventually("many decided evaluations", WAIT, || async {
        (sidecar
            .metric("guardrail_evaluations_total", "verdict=\"healthy\"")
            .await
            >= 30.0)
            .then_some(())
    })
    .await;
    let m = sidecar.metrics().await;
    assert!(
        metric(&m, "guardrail_window_error_ratio", "") > 0.0,
        "the noise is real"
    );
    assert_eq!(
        metric(&m, "guardrail_evaluations_total", "verdict=\"breach\""),
        0.0
    );
    assert!(cluster.guardrail_writes("").is_empty());
}
