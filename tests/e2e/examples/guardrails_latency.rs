//! Benchmark (not a test): time from the response that makes a breach evaluable to
//! the accepted rollback write, over repeated runs against real sidecar processes and
//! the API emulator; and false rollbacks of a healthy but noisy canary.
//!
//! ```text
//! cargo build -p guardrail-sidecar --bins
//! cargo run -p guardrail-e2e --example guardrails_latency -- [runs] [noisy-seconds]
//! ```

#[path = "../tests/guardrails_support/mod.rs"]
mod guardrails_support;

use std::time::{Duration, Instant, SystemTime};

use guardrails_support::{load, BackgroundLoad, Cluster, Mode, Sidecar, Upstream, TEST_CONFIG};
use serde_json::json;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let noisy_seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let cluster = Cluster::start().await;
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let name = format!("m{run}");
        cluster.seed_canary(&name, 25, json!({}));
        let upstream = Upstream::start(Mode::Healthy).await;
        let canary = format!("{name}-00002");
        let sidecar = Sidecar::start(&cluster, &upstream, &name, &canary, TEST_CONFIG, &[]);
        sidecar.wait_ready(25.0).await;
        upstream.set(Mode::Failing);
        load(&client, &sidecar.url(), 49).await;
        let start = SystemTime::now();
        load(&client, &sidecar.url(), 1).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let written = loop {
            let w = cluster.guardrail_writes(&format!("/services/{name}"));
            if let Some(first) = w.first() {
                break first.time;
            }
            assert!(Instant::now() < deadline, "run {run}: no rollback");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        samples.push(written.duration_since(start).unwrap_or_default());
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "breach evaluable -> accepted write over {runs} runs: p50 {:?}  p99 {:?}  max {:?}",
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );

    if noisy_seconds > 0 {
        cluster.seed_canary("noisy", 25, json!({ "guardrail.dev/max-p99": "200ms" }));
        let upstream = Upstream::start(Mode::Noisy).await;
        let sidecar = Sidecar::start(
            &cluster,
            &upstream,
            "noisy",
            "noisy-00002",
            TEST_CONFIG,
            &[],
        );
        sidecar.wait_ready(25.0).await;
        let loads: Vec<BackgroundLoad> = (0..8)
            .map(|_| BackgroundLoad::start(sidecar.url(), Duration::from_millis(5)))
            .collect();
        tokio::time::sleep(Duration::from_secs(noisy_seconds)).await;
        drop(loads);
        let requests = sidecar.metric("guardrail_requests_total", "").await;
        let breaches = sidecar
            .metric("guardrail_evaluations_total", "verdict=\"breach\"")
            .await;
        let healthy = sidecar
            .metric("guardrail_evaluations_total", "verdict=\"healthy\"")
            .await;
        println!(
            "noisy healthy canary for {noisy_seconds}s: {requests} requests, {healthy} healthy and {breaches} breaching evaluations, {} rollback writes",
            cluster.guardrail_writes("/services/noisy").len()
        );
    }
}
