//! Rollback under an unreliable or unwilling API server, and with several replicas of
//! the canary racing to write.
//!
//! With the per-revision judgement, the replicas elect one judge (a Lease) that reads
//! the others' counts, so "racing" is now the election's job; conditional writes still
//! guard every write.

mod guardrails_support;

use guardrail_e2e::process::eventually;
use guardrails_support::{
    canary_at_25, load, sidecar_at_25, wait_rolled_back, Mode, Sidecar, CANARY, SVC, TEST_CONFIG,
    WAIT,
};
use serde_json::json;

#[tokio::test]
async fn three_replicas_racing_make_exactly_one_effective_write() {
    let (cluster, upstream) = canary_at_25(json!({}), Mode::Healthy).await;
    let replicas: Vec<Sidecar> = (0..3)
        .map(|_| Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]))
        .collect();
    for r in &replicas {
        r.wait_ready(25.0).await;
    }
    upstream.set(Mode::Failing);
    // All three reach the minimum count at about the same time.
    let client = reqwest::Client::new();
    let urls: Vec<String> = replicas.iter().map(Sidecar::url).collect();
    futures::future::join_all(urls.iter().map(|u| load(&client, u, 20))).await;
    wait_rolled_back(&cluster).await;
    // One replica holds the revision's judge Lease and judged the breach; the others
    // only published their counts (cumulative counters: no race with the rollback,
    // after which no replica is a canary any more).
    let mut judged = 0;
    let mut followed = 0;
    for r in &replicas {
        let breaches = r
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await;
        let follows = r
            .metric("guardrail_evaluations_total", "verdict=\"follower\"")
            .await;
        judged += usize::from(breaches > 0.0);
        followed += usize::from(breaches == 0.0 && follows > 0.0);
    }
    assert_eq!((judged, followed), (1, 2));
    let lease = cluster
        .emu
        .get("leases", "default", &format!("guardrail-judge-{CANARY}"))
        .expect("the judge Lease");
    assert!(replicas
        .iter()
        .any(|r| lease["spec"]["holderIdentity"] == json!(r.pod)));
    let writes = cluster.guardrail_writes("/services/m");
    assert_eq!(writes.len(), 1, "one effective write: {writes:?}");
    let mut written = 0.0;
    for r in &replicas {
        written += r
            .metric("guardrail_actions_total", "outcome=\"written\"")
            .await;
    }
    assert_eq!(written, 1.0);
    eventually("the Event", WAIT, || async {
        (!cluster.events_for(SVC).is_empty()).then_some(())
    })
    .await;
    assert_eq!(cluster.events_for(SVC).len(), 1, "one Event");
}

#[tokio::test]
async fn api_errors_resets_and_conflicts_during_the_breach_delay_but_do_not_stop_the_rollback() {
    let (cluster, _upstream, sidecar) = sidecar_at_25(Mode::Failing, CANARY, 25.0).await;
    cluster
        .emu
        .faults()
        .errors(500, 3)
        .reset_connections(2)
        .conflicts(2);
    load(&reqwest::Client::new(), &sidecar.url(), 50).await;
    wait_rolled_back(&cluster).await;
    assert!(
        sidecar
            .metric("guardrail_kube_api_errors_total", "reason=\"transient\"")
            .await
            >= 3.0
    );
    assert!(
        sidecar
            .metric("guardrail_kube_api_errors_total", "reason=\"conflict\"")
            .await
            >= 2.0
    );
    assert_eq!(cluster.guardrail_writes("/services/m").len(), 1);
}

#[tokio::test]
async fn api_server_down_during_the_breach_rolls_back_when_it_returns() {
    let (cluster, _upstream, sidecar) = sidecar_at_25(Mode::Failing, CANARY, 25.0).await;
    cluster.emu.stop().await;
    let client = reqwest::Client::new();
    let codes = load(&client, &sidecar.url(), 50).await;
    assert!(
        codes.iter().all(|c| *c == 500),
        "served while the API is down"
    );
    eventually("failed attempts while the API is down", WAIT, || async {
        (sidecar
            .metric("guardrail_kube_api_errors_total", "reason=\"transient\"")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(cluster.traffic(SVC)[1].1, 25);
    cluster.emu.restart().await.expect("emulator restarts");
    wait_rolled_back(&cluster).await;
}

#[tokio::test]
async fn forbidden_writes_are_reported_and_traffic_keeps_flowing() {
    let (cluster, upstream) = canary_at_25(json!({}), Mode::Failing).await;
    cluster
        .emu
        .faults()
        .deny("patch", "services.serving.knative.dev");
    let mut sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]);
    sidecar.wait_ready(25.0).await;
    let client = reqwest::Client::new();
    load(&client, &sidecar.url(), 50).await;
    eventually("the 403 is counted", WAIT, || async {
        (sidecar
            .metric("guardrail_kube_api_errors_total", "reason=\"forbidden\"")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(
        sidecar.child.child.try_wait().expect("wait").is_none(),
        "the sidecar is still running"
    );
    upstream.set(Mode::Healthy);
    assert_eq!(load(&client, &sidecar.url(), 3).await, [200, 200, 200]);
    assert_eq!(
        cluster.traffic(SVC)[1],
        ("@latest".into(), 25, String::new())
    );
    eventually("the denial is visible on the Service", WAIT, || async {
        cluster
            .events_for(SVC)
            .iter()
            .any(|e| e["reason"] == json!("GuardrailForbidden"))
            .then_some(())
    })
    .await;
    assert!(
        sidecar
            .metric("guardrail_actions_total", "outcome=\"stopped\"")
            .await
            >= 1.0
    );
}
