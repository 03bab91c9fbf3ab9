//! Support for the Prometheus end-to-end tests: Debian's `prometheus` on an ephemeral
//! port with a temporary config and data directory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::process::{eventually, free_port, ChildGuard};

/// A running Prometheus server.
pub struct Prometheus {
    pub child: ChildGuard,
    pub addr: SocketAddr,
}

/// The Prometheus binary (`GUARDRAIL_PROMETHEUS_BIN`, default `/usr/bin/prometheus`).
pub fn binary() -> PathBuf {
    let path = std::env::var_os("GUARDRAIL_PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "Prometheus ({}) is missing: run tests/run.sh (tests/setup/prometheus.sh installs it)",
        path.display()
    );
    path
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `interval`, and waits until ready.
    pub async fn start(dir: &Path, targets: &[SocketAddr], interval: &str) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let scrape = format!(
            "  - job_name: sidecar\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        Self::start_with(dir, &scrape, interval).await
    }

    /// Starts Prometheus with `scrape_configs` (YAML list items, indented two spaces)
    /// every `interval`, and waits until ready.
    pub async fn start_with(dir: &Path, scrape_configs: &str, interval: &str) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
                 scrape_configs:\n{scrape_configs}"
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cmd = Command::new(binary());
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let child = ChildGuard::spawn("prometheus", &mut cmd);
        let ready = format!("http://{addr}/-/ready");
        eventually(
            "Prometheus to be ready",
            Duration::from_secs(60),
            || async {
                let r = reqwest::get(&ready).await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        Self { child, addr }
    }

    /// The first sample of an instant query, if any.
    pub async fn query(&self, promql: &str) -> Option<f64> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        r["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}
