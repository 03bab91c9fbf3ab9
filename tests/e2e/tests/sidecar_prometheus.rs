//! A real Prometheus scrapes the real sidecar: `histogram_quantile(0.99, …)` over the
//! scraped histogram agrees with the sidecar's own window p99 within the bucket
//! resolution.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use guardrail_e2e::{
    process::eventually,
    prometheus::Prometheus,
    sidecar::{upstream, SidecarProcess},
};
use http_body_util::{BodyExt, Full};
use hyper::Response;

/// The sidecar's latency buckets: 0.5 ms × 1.25ⁿ (see sidecar/src/metrics.rs).
fn bucket_bounds(v: f64) -> (f64, f64) {
    let mut hi = 0.0005;
    let mut lo = 0.0;
    while hi < v {
        lo = hi;
        hi *= 1.25;
    }
    (lo, hi)
}

#[tokio::test]
async fn prometheus_p99_agrees_with_the_window_p99() {
    let up = upstream(|req| async move {
        let ms: u64 = req
            .headers()
            .get("x-delay-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(
            Full::new(Bytes::from_static(b"{}"))
                .map_err(|never| match never {})
                .boxed(),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = SidecarProcess::start(
        &format!("http://{up}"),
        "scored-00001",
        "window: { length: 10m }\n",
        dir.path(),
    );
    let prometheus = Prometheus::start(dir.path(), &[sidecar.admin], "200ms").await;

    // 200 requests: most take 0..39 ms, four take 150 ms, so p99 sits in the tail.
    const N: usize = 200;
    let client = reqwest::Client::new();
    let url = sidecar.url("/v1/models/m:predict");
    futures::stream::iter(0..N)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let delay = if i % 50 == 7 { 150 } else { (i * 7) % 40 };
                let r = client
                    .post(&url)
                    .header("x-delay-ms", delay.to_string())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("body");
            }
        })
        .buffer_unordered(10)
        .collect::<Vec<()>>()
        .await;

    let window = sidecar.guardrails().await;
    assert_eq!(window["window"]["requests"], N);
    let own = window["window"]["latency_p99_seconds"]
        .as_f64()
        .expect("p99");
    assert!(
        own >= 0.15,
        "the window p99 {own} must be in the 150 ms tail"
    );

    eventually(
        "Prometheus to scrape all requests",
        Duration::from_secs(30),
        || async {
            let n = prometheus
                .query("guardrail_request_duration_seconds_count")
                .await?;
            (n == N as f64).then_some(())
        },
    )
    .await;
    let scraped = prometheus
        .query("histogram_quantile(0.99, guardrail_request_duration_seconds_bucket)")
        .await
        .expect("histogram_quantile result");
    let (lo, hi) = bucket_bounds(own);
    // Prometheus interpolates inside the bucket holding the 99th rank; the window's HDR
    // value (≤1% error) lies in that same bucket.
    assert!(
        scraped >= lo * 0.99 && scraped <= hi * 1.01,
        "Prometheus p99 {scraped} vs window p99 {own}: not in the same bucket [{lo}, {hi}]"
    );
    let window_gauge = prometheus
        .query(r#"guardrail_window_latency_seconds{quantile="0.99"}"#)
        .await
        .expect("window p99 gauge scraped");
    assert!(
        (window_gauge - own).abs() <= own * 0.01,
        "gauge {window_gauge} vs /guardrails {own}"
    );
}
