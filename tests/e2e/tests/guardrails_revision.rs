//! One verdict per revision: the judge (Lease holder) of a canary adds up every pod's
//! counts, compares the canary with the stable revision's pods over the same step, never
//! counts a missing pod as healthy, and holds an undecided step at its deadline.

mod guardrails_support;

use std::time::Duration;

use guardrail_e2e::process::eventually;
use guardrails_support::{
    canary_at_25, load, load_parallel, wait_rolled_back, Mode, Sidecar, Upstream, CANARY, STABLE,
    SVC, TEST_CONFIG, WAIT,
};
use serde_json::{json, Value};

/// The judge of `sidecars` (the one whose `/guardrails` carries findings).
async fn judge_of(sidecars: &[Sidecar]) -> &Sidecar {
    eventually("a judge is elected", WAIT, || async {
        for s in sidecars {
            if s.metric("guardrail_judge_standing", "standing=\"judge\"")
                .await
                == 1.0
            {
                return Some(s);
            }
        }
        None
    })
    .await
}

fn finding<'a>(verdict: &'a Value, guardrail: &str) -> &'a Value {
    verdict["verdict"]["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["guardrail"] == json!(guardrail)))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn errors_split_across_two_pods_are_judged_once_for_the_revision() {
    // With a floor of 4 requests, neither pod alone (2 failures each) has the evidence;
    // the revision (4 failures) does.
    let (cluster, upstream) =
        canary_at_25(json!({ "guardrail.dev/min-requests": "4" }), Mode::Failing).await;
    let pods: Vec<Sidecar> = (0..2)
        .map(|_| Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]))
        .collect();
    for p in &pods {
        p.wait_ready(25.0).await;
    }
    judge_of(&pods).await;
    let client = reqwest::Client::new();
    for p in &pods {
        load(&client, &p.url(), 2).await;
    }
    wait_rolled_back(&cluster).await;
    let writes = cluster.guardrail_writes("/services/m");
    assert_eq!(writes.len(), 1, "one rollback: {writes:?}");
    let a = &cluster.service(SVC)["metadata"]["annotations"];
    let verdict: Value =
        serde_json::from_str(a["guardrail.dev/verdict"].as_str().expect("verdict")).expect("JSON");
    let errors = verdict["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["guardrail"] == json!("error_ratio")))
        .expect("error_ratio finding");
    assert_eq!(errors["state"], json!("breach"));
    assert_eq!(
        errors["requests"],
        json!(4),
        "both pods' requests: {errors}"
    );
}

#[tokio::test]
async fn a_regression_under_the_absolute_limit_is_rolled_back_against_the_stable() {
    // Stable at 0.5% errors, canary at 4%: under the 5% limit, +3.5 points over the
    // stable, more than the default allowed increase of 2 points.
    let (cluster, canary_upstream) = canary_at_25(json!({}), Mode::Errors4).await;
    let stable_upstream = Upstream::start(Mode::Errors05).await;
    let stable = Sidecar::start(&cluster, &stable_upstream, SVC, STABLE, TEST_CONFIG, &[]);
    let canary = Sidecar::start(&cluster, &canary_upstream, SVC, CANARY, TEST_CONFIG, &[]);
    stable.wait_ready(75.0).await;
    canary.wait_ready(25.0).await;
    let client = reqwest::Client::new();
    let (stable_url, canary_url) = (stable.url(), canary.url());
    let mut sent = 0;
    while cluster.guardrail_writes("/services/m").is_empty() && sent < 8_000 {
        futures::join!(
            load_parallel(&client, &stable_url, 150),
            load_parallel(&client, &canary_url, 50),
        );
        sent += 50;
    }
    wait_rolled_back(&cluster).await;
    let a = &cluster.service(SVC)["metadata"]["annotations"];
    let why = a["guardrail.dev/rollback-reason"].as_str().expect("reason");
    assert!(why.contains("error_ratio_increase breach"), "{why}");
    assert!(
        !why.contains("error_ratio breach"),
        "not the absolute limit: {why}"
    );
    eprintln!("relative regression rolled back after {sent} canary requests: {why}");
}

#[tokio::test]
async fn a_pod_that_disappears_is_missing_data_never_a_healthy_verdict() {
    let (cluster, upstream) = canary_at_25(
        json!({ "guardrail.dev/max-sanity-failure-ratio": "off" }),
        Mode::Healthy,
    )
    .await;
    let mut pods: Vec<Sidecar> = (0..2)
        .map(|_| Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]))
        .collect();
    for p in &pods {
        p.wait_ready(25.0).await;
    }
    let judge_pod = judge_of(&pods).await.pod.clone();
    let client = reqwest::Client::new();
    for p in &pods {
        load_parallel(&client, &p.url(), 200).await;
    }
    let judge_index = pods.iter().position(|p| p.pod == judge_pod).expect("judge");
    let judge = &pods[judge_index];
    // Healthy with both pods' reports in the sum (the judge can be healthy on its own
    // report alone, before the other pod's arrives).
    let requests_before = eventually("the revision is healthy with both pods", WAIT, || async {
        let v = judge.guardrails().await;
        let requests = finding(&v, "error_ratio")["requests"].clone();
        (v["verdict"]["state"] == json!("healthy") && requests == json!(400)).then_some(requests)
    })
    .await;
    // The other pod goes away (its last report stays in the sum).
    pods.remove(1 - judge_index);
    let judge = &pods[0];
    let v = eventually("the missing pod is noted", WAIT, || async {
        let v = judge.guardrails().await;
        let notes = v["verdict"]["notes"].to_string();
        notes.contains("missing").then_some(v)
    })
    .await;
    assert_eq!(v["verdict"]["state"], json!("undecided"), "{v}");
    assert_eq!(finding(&v, "error_ratio")["requests"], requests_before);
    assert!(cluster.guardrail_writes("").is_empty());
}

#[tokio::test]
async fn an_undecided_step_holds_at_its_deadline_and_says_why() {
    let (cluster, upstream) = canary_at_25(
        json!({ "guardrail.dev/decision-deadline": "2s", "guardrail.dev/steps": "25,100" }),
        Mode::Healthy,
    )
    .await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, CANARY, TEST_CONFIG, &[]);
    sidecar.wait_ready(25.0).await;
    // No traffic: nothing decides, and no data never rolls back nor promotes.
    let events = eventually("the deadline Event", WAIT, || async {
        let e = cluster.events_for(SVC);
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events[0]["reason"], json!("GuardrailUndecided"));
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("holding traffic") && note.contains("undecided"),
        "{note}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cluster.guardrail_writes("").is_empty());
    assert_eq!(
        sidecar
            .metric("guardrail_deadline_actions_total", "action=\"hold\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn both_revisions_slowed_alike_are_not_rolled_back_but_a_canary_slowed_alone_is() {
    // Two Services in one cluster: in `alike` both revisions answer in 300 ms (CPU
    // starvation hits every pod), in `alone` only the canary does. The latency
    // regression guardrail compares each canary with its own stable revision.
    let cluster = guardrails_support::Cluster::start().await;
    let (slow, fast) = (
        Upstream::start(Mode::Slow).await,
        Upstream::start(Mode::Healthy).await,
    );
    for name in ["alike", "alone"] {
        cluster.seed_canary(name, 25, json!({}));
    }
    let start = |name: &str, revision: &str, upstream: &Upstream| {
        Sidecar::start(&cluster, upstream, name, revision, TEST_CONFIG, &[])
    };
    let alike = [
        start("alike", "alike-00001", &slow),
        start("alike", "alike-00002", &slow),
    ];
    let alone = [
        start("alone", "alone-00001", &fast),
        start("alone", "alone-00002", &slow),
    ];
    for pair in [&alike, &alone] {
        pair[0].wait_ready(75.0).await;
        pair[1].wait_ready(25.0).await;
    }
    let client = reqwest::Client::new();
    let round = |pair: &[Sidecar; 2]| {
        let (stable, canary) = (pair[0].url(), pair[1].url());
        let client = client.clone();
        async move {
            futures::join!(
                load_parallel(&client, &stable, 150),
                load_parallel(&client, &canary, 50),
            )
        }
    };
    let mut rounds = 0;
    while cluster.guardrail_writes("/services/alone").is_empty() && rounds < 40 {
        futures::join!(round(&alike), round(&alone));
        rounds += 1;
    }
    eventually("the canary slowed alone is rolled back", WAIT, || async {
        (cluster.traffic("alone")[1].1 == 0).then_some(())
    })
    .await;
    let a = &cluster.service("alone")["metadata"]["annotations"];
    let why = a["guardrail.dev/rollback-reason"].as_str().expect("reason");
    assert!(why.contains("latency_regression breach"), "{why}");
    // As much evidence again for the revisions slowed alike: still no rollback.
    for _ in 0..rounds {
        round(&alike).await;
    }
    // The judgement runs on its own tick: the last round's requests reach the verdict
    // at the next one.
    let (v, f) = eventually("judged on every canary request", WAIT, || async {
        let v = alike[1].guardrails().await;
        let f = finding(&v, "latency_regression").clone();
        (f["requests"].as_u64().unwrap_or(0) >= 50 * 2 * rounds).then_some((v, f))
    })
    .await;
    assert!(
        f["baseline"].as_f64().unwrap_or(0.0) >= 0.3,
        "stable p99: {f}"
    );
    assert_ne!(f["state"], json!("breach"), "{v}");
    assert_ne!(v["verdict"]["state"], json!("breach"), "{v}");
    assert!(cluster.guardrail_writes("/services/alike").is_empty());
    eprintln!("slowed alone rolled back after {rounds} rounds: {why}; alike: {f}");
}
