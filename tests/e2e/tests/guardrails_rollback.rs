//! Rollback end to end: real `guardrail-sidecar` processes in front of a switchable
//! upstream, judging a Knative canary in the API emulator and rolling it back.

mod guardrails_support;

use std::time::Duration;

use guardrail_e2e::process::eventually;
use guardrails_support::{
    canary_at_25, load, load_parallel, metric, rolled_back, sidecar_at_25, wait_rolled_back,
    BackgroundLoad, Mode, Sidecar, CANARY, STABLE, SVC, TEST_CONFIG, WAIT,
};
use serde_json::json;

/// Sends one request, then waits until the sidecar has judged after it (evaluations run
/// on every completion): requests are counted against the verdict, not the clock.
async fn one_judged_request(client: &reqwest::Client, sidecar: &Sidecar) {
    let before = sidecar.metric("guardrail_evaluations_total", "").await;
    load(client, &sidecar.url(), 1).await;
    eventually("an evaluation after the request", WAIT, || async {
        (sidecar.metric("guardrail_evaluations_total", "").await > before).then_some(())
    })
    .await;
}

/// Sends judged requests one at a time until the sidecar has judged a breach; returns
/// how many that took, or `None` when `cap` requests were not enough.
async fn requests_to_breach(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    cap: usize,
) -> Option<usize> {
    for sent in 1..=cap {
        one_judged_request(client, sidecar).await;
        let breaches = sidecar
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await;
        if breaches > 0.0 {
            return Some(sent);
        }
    }
    None
}

/// Breaks the canary with `mode` and checks the rollback comes within `within`
/// requests (the sequential tests' bound, see docs/guardrails.md): traffic,
/// annotations with the verdict's numbers, Event, one write.
async fn breaks_and_rolls_back(
    mode: Mode,
    annotations: serde_json::Value,
    config: &str,
    reason: &str,
    within: usize,
) {
    let (cluster, upstream) = canary_at_25(annotations, Mode::Healthy).await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, config, &[]);
    sidecar.wait_ready(25.0).await;
    upstream.set(mode);
    let client = reqwest::Client::new();
    let sent = requests_to_breach(&client, &sidecar, within)
        .await
        .unwrap_or_else(|| panic!("{reason}: no breach within {within} requests"));
    wait_rolled_back(&cluster).await;
    eprintln!("{reason}: rolled back after {sent} requests");
    let writes = cluster.guardrail_writes("/services/m");
    assert_eq!(writes.len(), 1, "exactly one effective write: {writes:?}");
    let svc = cluster.service(SVC);
    let a = &svc["metadata"]["annotations"];
    assert_eq!(a["guardrail.dev/rolled-back-revision"], json!(CANARY));
    assert_eq!(a["guardrail.dev/quarantined-revisions"], json!(CANARY));
    let why = a["guardrail.dev/rollback-reason"].as_str().expect("reason");
    assert!(why.contains(reason) && why.contains("alpha"), "{why}");
    let verdict: serde_json::Value =
        serde_json::from_str(a["guardrail.dev/verdict"].as_str().expect("verdict")).expect("JSON");
    assert_eq!(verdict["state"], json!("breach"));
    assert!(verdict["findings"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
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
        .is_some_and(|n| n.contains(CANARY) && n.contains(STABLE) && n.contains(reason)));
    assert_eq!(
        sidecar
            .metric("guardrail_actions_total", "outcome=\"written\"")
            .await,
        1.0
    );
    // Traffic is still served by the sidecar after the rollback.
    upstream.set(Mode::Healthy);
    assert_eq!(load(&client, &sidecar.url(), 1).await, [200]);
}

#[tokio::test]
async fn canary_failing_every_request_is_rolled_back_within_10_requests() {
    breaks_and_rolls_back(
        Mode::Failing,
        json!({}),
        TEST_CONFIG,
        "error_ratio breach",
        10,
    )
    .await;
}

#[tokio::test]
async fn canary_slow_p99_is_rolled_back() {
    breaks_and_rolls_back(
        Mode::Slow,
        json!({ "guardrail.dev/max-p99": "100ms" }),
        TEST_CONFIG,
        "p99 breach",
        10,
    )
    .await;
}

#[tokio::test]
async fn canary_nan_outputs_are_rolled_back() {
    breaks_and_rolls_back(
        Mode::Nan,
        json!({}),
        TEST_CONFIG,
        "sanity_failure_ratio breach",
        10,
    )
    .await;
}

#[tokio::test]
async fn canary_score_drift_is_rolled_back() {
    let config = format!(
        "{TEST_CONFIG}sanity:\n  score: {{ pointer: /predictions, edges: [0.5], reference: [1, 1] }}\n"
    );
    // PSI's evidence rule needs 50 scores before it looks.
    breaks_and_rolls_back(
        Mode::Drift,
        json!({ "guardrail.dev/max-psi": "0.2" }),
        &config,
        "psi breach",
        60,
    )
    .await;
}

#[tokio::test]
async fn a_canary_that_turns_bad_after_a_healthy_stretch_is_rolled_back_promptly() {
    let (cluster, upstream, sidecar) = sidecar_at_25(Mode::Healthy, CANARY, 25.0).await;
    let client = reqwest::Client::new();
    load_parallel(&client, &sidecar.url(), 400).await;
    // Let checkpoints of the healthy stretch accumulate (one a second).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    upstream.set(Mode::Failing);
    let sent = requests_to_breach(&client, &sidecar, 25)
        .await
        .expect("a breach within 25 failures after the healthy stretch");
    wait_rolled_back(&cluster).await;
    let why = cluster.service(SVC)["metadata"]["annotations"]["guardrail.dev/rollback-reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert!(
        why.contains("over the last"),
        "the recent test decided: {why}"
    );
    eprintln!("turned bad after 400 healthy requests: rolled back after {sent} failures");
}

#[tokio::test]
async fn below_the_request_floor_nothing_happens_and_the_next_request_decides() {
    let (cluster, upstream) =
        canary_at_25(json!({ "guardrail.dev/min-requests": "20" }), Mode::Failing).await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]);
    sidecar.wait_ready(25.0).await;
    let client = reqwest::Client::new();
    for _ in 0..19 {
        one_judged_request(&client, &sidecar).await;
    }
    assert!(cluster.guardrail_writes("/services/m").is_empty());
    assert_eq!(
        sidecar
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await,
        0.0
    );
    one_judged_request(&client, &sidecar).await;
    eventually("the 20th request decides", WAIT, || async {
        (cluster.traffic(SVC) == rolled_back()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_stable_revision_never_rolls_anything_back() {
    let (cluster, _upstream, sidecar) = sidecar_at_25(Mode::Failing, STABLE, 75.0).await;
    let client = reqwest::Client::new();
    load(&client, &sidecar.url(), 80).await;
    eventually("evaluations of the stable revision", WAIT, || async {
        (sidecar
            .metric("guardrail_evaluations_total", "verdict=\"not_canary\"")
            .await
            >= 3.0)
            .then_some(())
    })
    .await;
    assert!(cluster.guardrail_writes("").is_empty());
    assert_eq!(
        cluster.traffic(SVC),
        [
            (STABLE.into(), 75, "previous".into()),
            ("@latest".into(), 25, String::new())
        ]
    );
    // It measures (the judge of a canary reads it as the baseline) but never judges.
    assert_eq!(
        sidecar.metric("guardrail_window_error_ratio", "").await,
        1.0
    );
    assert_eq!(
        sidecar
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await,
        0.0
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

#[tokio::test]
async fn ten_healthy_canaries_at_low_traffic_are_none_rolled_back() {
    // The naive rule ("observed ratio > limit", judged after every request) rolled back
    // all six canaries failing 2% of requests under a 5% limit. Ten canaries, each with
    // its own Service and sidecar, one request every 100 ms each.
    let cluster = guardrails_support::Cluster::start().await;
    let upstream = guardrails_support::Upstream::start(Mode::Errors2).await;
    let names: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    for name in &names {
        cluster.seed_canary(name, 5, json!({}));
    }
    let sidecars: Vec<Sidecar> = names
        .iter()
        .map(|name| {
            let revision = format!("{name}-00002");
            Sidecar::start(&cluster, &upstream, name, &revision, TEST_CONFIG, &[])
        })
        .collect();
    for s in &sidecars {
        s.wait_ready(5.0).await;
    }
    let client = reqwest::Client::new();
    let urls: Vec<String> = sidecars.iter().map(Sidecar::url).collect();
    let per_canary = 80;
    for _ in 0..per_canary {
        let round = urls.iter().map(|url| load(&client, url, 1));
        futures::future::join_all(round).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut errors = 0.0;
    for (name, s) in names.iter().zip(&sidecars) {
        let m = s.metrics().await;
        errors += metric(&m, "guardrail_request_errors_total", "");
        assert!(
            metric(&m, "guardrail_evaluations_total", "") >= f64::from(per_canary) / 2.0,
            "{name} was judged"
        );
        assert_eq!(
            metric(&m, "guardrail_evaluations_total", "verdict=\"breach\""),
            0.0,
            "{name}: {}",
            s.guardrails().await
        );
        assert_eq!(cluster.traffic(name)[1].1, 5, "{name} keeps its 5%");
    }
    assert!(errors >= 5.0, "the 2% errors are real: {errors}");
    assert!(cluster.guardrail_writes("").is_empty());
}
