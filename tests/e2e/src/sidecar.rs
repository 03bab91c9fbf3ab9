//! Support for the sidecar end-to-end tests: the real `guardrail-sidecar` binary and a
//! scriptable Rust upstream.

use std::{
    convert::Infallible,
    future::Future,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

use crate::{bins::bin, process::ChildGuard};

/// The `/metrics` text of a sidecar's admin listener at `admin`.
pub async fn admin_metrics(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A running sidecar process and the addresses it printed.
pub struct SidecarProcess {
    pub child: ChildGuard,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl SidecarProcess {
    /// Starts the sidecar on ephemeral ports in front of `upstream`, with `config`
    /// YAML written to a file in `dir`.
    pub fn start(upstream: &str, revision: &str, config: &str, dir: &Path) -> Self {
        Self::spawn(&mut Self::command(upstream, revision, config, dir, &[]))
    }

    /// [`SidecarProcess::start`] with `extra` flags, logging at `RUST_LOG=info` to the
    /// file it returns (for tests that read what the sidecar logged).
    pub fn start_logged(
        upstream: &str,
        revision: &str,
        config: &str,
        dir: &Path,
        extra: &[&str],
    ) -> (Self, PathBuf) {
        let log = dir.join("sidecar-stderr.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Self::command(upstream, revision, config, dir, extra);
        cmd.env("RUST_LOG", "info").stderr(Stdio::from(file));
        (Self::spawn(&mut cmd), log)
    }

    fn command(
        upstream: &str,
        revision: &str,
        config: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Command {
        let config_path = dir.join("sidecar.yaml");
        std::fs::write(&config_path, config).expect("write sidecar config");
        let mut cmd = Command::new(bin("guardrail-sidecar"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
        ])
        .arg("--config")
        .arg(&config_path)
        .args(["--revision", revision])
        .args(extra)
        .env("RUST_LOG", "warn");
        cmd
    }

    /// Spawns a sidecar `cmd` that listens on ephemeral ports and reads the addresses
    /// from the first line it prints.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = ChildGuard::spawn("guardrail-sidecar", cmd.stdout(Stdio::piped()));
        let stdout = child.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sidecar's listening line");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in sidecar output `{line}`"))
        };
        let (proxy, admin) = (addr("proxy="), addr("admin="));
        Self {
            child,
            proxy,
            admin,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// The `/guardrails` document.
    pub async fn guardrails(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/guardrails", self.admin))
            .await
            .expect("GET /guardrails")
            .json()
            .await
            .expect("/guardrails is JSON")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        admin_metrics(self.admin).await
    }

    /// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .strip_suffix(" kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

pub type UpBody = BoxBody<Bytes, std::io::Error>;

/// Serves `handler` (HTTP/1.1 and h2c) on an ephemeral port kept bound for the test.
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<UpBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
