//! The dashboard must not lie: the real webhook and sidecar under load, a real Prometheus
//! scraping them (with the labels the chart's ServiceMonitor and PodMonitor give:
//! `namespace`, and the Knative `service` for sidecars), and **every query** of
//! `charts/guardrail/dashboards/guardrail.json` (panels, annotations, variables)
//! evaluated through Prometheus's HTTP API: each must return data. A query naming a
//! metric or label the binaries do not export fails.
//!
//! Variables are substituted as Grafana does for "All" (`.*`), `$__rate_interval` by a
//! window holding several scrapes. Queries ending in an event filter (`> 0`, `== 1`:
//! annotations for rollbacks, the states panel) are evaluated without it: before a
//! rollback happens the filter rightly returns nothing, and what must exist is the
//! series it filters.

use std::time::Duration;

use guardrail_e2e::{
    process::eventually,
    prometheus::Prometheus,
    sidecar::{upstream, SidecarProcess},
    webhook::{admission_review, probed_pod, workspace_root, Webhook},
};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// Every PromQL expression in the dashboard, with where it is.
fn queries(board: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in board["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?}", panel["title"]),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for annotation in board["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((
                format!("annotation {:?}", annotation["name"]),
                expr.to_string(),
            ));
        }
    }
    out
}

/// `label_values(selector, label)` of the query variables.
fn variables(board: &Value) -> Vec<(String, String, String)> {
    board["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let query = v["query"]["query"].as_str()?;
            let inner = query.strip_prefix("label_values(")?.strip_suffix(')')?;
            let (selector, label) = inner.rsplit_once(',')?;
            Some((
                v["name"].as_str()?.to_string(),
                selector.trim().to_string(),
                label.trim().to_string(),
            ))
        })
        .collect()
}

fn substitute(expr: &str) -> String {
    let mut e = expr.replace("$__rate_interval", "30s");
    for var in ["$webhook_namespace", "$namespace", "$service", "$revision"] {
        e = e.replace(var, ".*");
    }
    for filter in [" > 0", " == 1"] {
        if let Some(stripped) = e.strip_suffix(filter) {
            e = stripped.to_string();
        }
    }
    e
}

async fn result(prometheus: &Prometheus, promql: &str) -> Value {
    let r: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/query", prometheus.addr))
        .query(&[("query", promql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "success", "{promql}: {r}");
    r["data"]["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_the_real_binaries() {
    let text = std::fs::read_to_string(
        workspace_root().join("charts/guardrail/dashboards/guardrail.json"),
    )
    .unwrap();
    let board: Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A model answering KServe V1 predictions, behind the sidecar.
    let model = upstream(|req| async move {
        let _ = req.into_body().collect().await;
        let body = Full::new(bytes::Bytes::from(r#"{"predictions":[0.25]}"#));
        let mut response = hyper::Response::new(body.map_err(|never| match never {}).boxed());
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    })
    .await;
    let sidecar = SidecarProcess::start(&format!("http://{model}"), "iris-00002", "", dir.path());
    // The webhook with injection configured.
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "injection:\n  image: ghcr.io/guardrail-dev/guardrail-sidecar@sha256:{}\n",
            "3".repeat(64)
        ),
    )
    .unwrap();
    let webhook = Webhook::start(&["--config", config.to_str().unwrap()]);

    let scrape = [
        "  - job_name: sidecars".to_string(),
        "    static_configs:".into(),
        format!("      - targets: ['{}']", sidecar.admin),
        "        labels: {namespace: ml, service: iris}".into(),
        "  - job_name: guardrail".into(),
        "    static_configs:".into(),
        format!("      - targets: ['{}']", webhook.metrics_addr),
        "        labels: {namespace: guardrail-system}".into(),
    ]
    .join("\n")
        + "\n";
    let prometheus = Prometheus::start_with(dir.path(), &scrape, "1s").await;

    // Load for a few scrapes: predictions, and admission reviews of both endpoints.
    let client = webhook.client();
    let pod = probed_pod(
        "p",
        &format!("registry.example/m@sha256:{}", "4".repeat(64)),
    );
    for round in 0..8 {
        for _ in 0..10 {
            let r = reqwest::Client::new()
                .post(format!("http://{}/v1/models/iris:predict", sidecar.proxy))
                .json(&json!({"instances": [[1.0]]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let review = admission_review(&format!("uid-{round}"), "CREATE", &pod);
        webhook.validate(&client, &review).await;
        let r = client
            .post(webhook.url("/mutate"))
            .json(&review)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // rate() and increase() need two samples in their window: wait for three scrapes.
    eventually(
        "three scrapes of both targets",
        Duration::from_secs(30),
        || async {
            let up = result(&prometheus, "min(count_over_time(up[30s]))").await;
            let scrapes: f64 = up[0]["value"][1].as_str()?.parse().ok()?;
            let both = result(&prometheus, "sum(up)").await;
            (scrapes >= 3.0 && both[0]["value"][1] == "2").then_some(())
        },
    )
    .await;

    let mut empty = Vec::new();
    let all = queries(&board);
    assert!(all.len() >= 20, "{} queries", all.len());
    for (place, expr) in &all {
        let promql = substitute(expr);
        if result(&prometheus, &promql)
            .await
            .as_array()
            .unwrap()
            .is_empty()
        {
            empty.push(format!("{place}: {promql}"));
        }
    }
    for (name, selector, label) in variables(&board) {
        let promql = format!("count by ({label}) ({})", substitute(&selector));
        let found = result(&prometheus, &promql).await;
        let values: Vec<&str> = found
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["metric"][&label].as_str())
            .collect();
        if values.is_empty() {
            empty.push(format!("variable {name}: {promql}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}
