//! Shared by the `guardrails_*` end-to-end tests: an emulated cluster with a Knative
//! Service split between two revisions, a Rust upstream that can be switched between
//! healthy, failing and slow, real `guardrail-sidecar` processes pointed at the
//! emulator with `KUBECONFIG`, load, and readers for traffic, audit and metrics.

#![allow(dead_code)] // Each test file uses a different part.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use guardrail_e2e::{
    bins::bin,
    process::{eventually, ChildGuard},
    sidecar::{admin_metrics, upstream, SidecarProcess, UpBody},
};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use kube_emulator::{AuditEntry, Emulator, Options};
use serde_json::{json, Value};

pub const NS: &str = "default";
/// Generous bound for "eventually": slow CI machines, never a timing assert.
pub const WAIT: Duration = Duration::from_secs(30);

/// The Knative Service most tests judge, its canary and its stable revision.
pub const SVC: &str = "m";
pub const CANARY: &str = "m-00002";
pub const STABLE: &str = "m-00001";

/// `SVC`'s traffic once its canary has been rolled back.
pub fn rolled_back() -> Vec<(String, i64, String)> {
    vec![
        (STABLE.into(), 100, "previous".into()),
        (CANARY.into(), 0, "canary".into()),
    ]
}

/// Waits (polling) until `SVC`'s canary is rolled back.
pub async fn wait_rolled_back(cluster: &Cluster) {
    eventually("the canary is rolled back", WAIT, || async {
        (cluster.traffic(SVC) == rolled_back()).then_some(())
    })
    .await;
}

/// A cluster with `SVC`'s canary at 25% carrying `annotations`, and an upstream in
/// `mode`.
pub async fn canary_at_25(annotations: Value, mode: Mode) -> (Cluster, Upstream) {
    let cluster = Cluster::start().await;
    cluster.seed_canary(SVC, 25, annotations);
    (cluster, Upstream::start(mode).await)
}

/// [`canary_at_25`] without annotations, plus a ready sidecar of `revision` with
/// [`TEST_CONFIG`] that sees `percent` for its revision.
pub async fn sidecar_at_25(
    mode: Mode,
    revision: &str,
    percent: f64,
) -> (Cluster, Upstream, Sidecar) {
    let (cluster, upstream) = canary_at_25(json!({}), mode).await;
    let sidecar = Sidecar::start(&cluster, &upstream, SVC, revision, TEST_CONFIG, &[]);
    sidecar.wait_ready(percent).await;
    (cluster, upstream, sidecar)
}

/// The emulator and a kubeconfig file for child processes.
pub struct Cluster {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let emu = Emulator::start(Options::default())
            .await
            .expect("emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        emu.write_kubeconfig(&kubeconfig).expect("write kubeconfig");
        Cluster {
            emu,
            dir,
            kubeconfig,
        }
    }

    /// Knative Service `name` with revisions `<name>-00001` (stable, tagged
    /// `previous`) and `<name>-00002` (latest) at `canary_percent`, plus `annotations`.
    pub fn seed_canary(&self, name: &str, canary_percent: i64, annotations: Value) {
        let svc = |image: &str, traffic: Value| {
            json!({
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": { "name": name, "namespace": NS, "annotations": annotations },
                "spec": {
                    "template": { "spec": { "containers": [{ "image": image }] } },
                    "traffic": traffic,
                },
            })
        };
        self.emu
            .put(svc(
                "registry.example/model@sha256:01",
                json!([{ "latestRevision": true, "percent": 100 }]),
            ))
            .expect("seed the first revision");
        self.emu
            .put(svc(
                "registry.example/model@sha256:02",
                json!([
                    { "revisionName": format!("{name}-00001"), "percent": 100 - canary_percent, "tag": "previous" },
                    { "latestRevision": true, "percent": canary_percent },
                ]),
            ))
            .expect("seed the canary");
        let stored = self.service(name);
        assert_eq!(
            stored["status"]["latestReadyRevisionName"],
            json!(format!("{name}-00002")),
            "the emulator created the second revision"
        );
    }

    pub fn service(&self, name: &str) -> Value {
        self.emu
            .get("ksvc", NS, name)
            .unwrap_or_else(|| panic!("ksvc {name} exists"))
    }

    /// `spec.traffic` of `name` as `(revision or "@latest", percent, tag)`.
    pub fn traffic(&self, name: &str) -> Vec<(String, i64, String)> {
        traffic_of(&self.service(name)["spec"]["traffic"])
    }

    /// Accepted (2xx) writes by Guardrail's field manager whose path contains `path`.
    pub fn guardrail_writes(&self, path: &str) -> Vec<AuditEntry> {
        self.emu
            .audit()
            .into_iter()
            .filter(|e| {
                e.verb == "patch"
                    && e.field_manager == "guardrail"
                    && (200..300).contains(&e.code)
                    && e.path.contains(path)
            })
            .collect()
    }

    /// Events recorded on the object named `name`.
    pub fn events_for(&self, name: &str) -> Vec<Value> {
        self.emu
            .list("events.events.k8s.io", NS)
            .expect("events are served")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == json!(name))
            .collect()
    }
}

pub fn traffic_of(list: &Value) -> Vec<(String, i64, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["revisionName"].as_str().unwrap_or("@latest").to_string(),
                t["percent"].as_i64().unwrap_or(0),
                t["tag"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// How the test upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Healthy = 0,
    /// 500 on every request.
    Failing = 1,
    /// 200 after 300 ms.
    Slow = 2,
    /// 200 with a NaN prediction (a sanity failure).
    Nan = 3,
    /// 200 with scores all at 0.9 (drift against a 0.3/0.7 reference).
    Drift = 4,
    /// Latencies spread over 10..180 ms and 2% errors: healthy but noisy.
    Noisy = 5,
    /// Fast, 4% errors (every 25th request).
    Errors4 = 6,
    /// Fast, 0.5% errors (every 200th request).
    Errors05 = 7,
    /// Fast, 2% errors spread pseudo-randomly (healthy under the 5% limit).
    Errors2 = 8,
}

/// A model-server stand-in whose behaviour tests switch at run time.
pub struct Upstream {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl Upstream {
    pub async fn start(mode: Mode) -> Upstream {
        let state = Arc::new(AtomicU8::new(mode as u8));
        let shared = state.clone();
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let addr = upstream(move |_req| {
            let mode = shared.load(Ordering::Acquire);
            // Healthy scores alternate 0.3 / 0.7: the drift test's reference.
            let count = served.fetch_add(1, Ordering::Relaxed);
            let odd = count % 2 == 1;
            async move {
                let body = |status: u16, text: &'static str| -> Response<UpBody> {
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(
                            Full::new(Bytes::from_static(text.as_bytes()))
                                .map_err(|never| match never {})
                                .boxed(),
                        )
                        .expect("static response")
                };
                match mode {
                    1 => body(500, r#"{"error":"model crashed"}"#),
                    2 => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        body(200, r#"{"predictions":[0.3]}"#)
                    }
                    3 => body(200, r#"{"predictions":[NaN]}"#),
                    4 => body(200, r#"{"predictions":[0.9]}"#),
                    5 => {
                        // A cheap deterministic spread (Knuth's multiplicative hash).
                        let n = count.wrapping_mul(2_654_435_761) % 1000;
                        tokio::time::sleep(Duration::from_millis(10 + n * 170 / 1000)).await;
                        if n < 20 {
                            body(500, r#"{"error":"transient"}"#)
                        } else {
                            body(200, r#"{"predictions":[0.3]}"#)
                        }
                    }
                    6 if count.is_multiple_of(25) => body(500, r#"{"error":"transient"}"#),
                    7 if count.is_multiple_of(200) => body(500, r#"{"error":"transient"}"#),
                    8 if count.wrapping_mul(2_654_435_761) % 1000 < 20 => {
                        body(500, r#"{"error":"transient"}"#)
                    }
                    _ if odd => body(200, r#"{"predictions":[0.7]}"#),
                    _ => body(200, r#"{"predictions":[0.3]}"#),
                }
            }
        })
        .await;
        Upstream { addr, mode: state }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A real `guardrail-sidecar` process for one revision, talking to the emulator.
pub struct Sidecar {
    pub child: ChildGuard,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The Pod registered for it in the emulator (what the revision's judge lists).
    pub pod: String,
}

/// Guardrails config for tests: re-read the Service often so step changes are seen
/// quickly; everything else default.
pub const TEST_CONFIG: &str = "guardrails:\n  refresh: 200ms\n  backoffMax: 500ms\n";

impl Sidecar {
    pub fn start(
        cluster: &Cluster,
        upstream: &Upstream,
        service: &str,
        revision: &str,
        config: &str,
        extra_args: &[&str],
    ) -> Sidecar {
        let config_path = cluster
            .dir
            .path()
            .join(format!("sidecar-{revision}-{}.yaml", uuid_like()));
        std::fs::write(&config_path, config).expect("write sidecar config");
        // GUARDRAIL_SIDECAR_BIN points at another build (e.g. --release for benchmarks).
        let program = std::env::var_os("GUARDRAIL_SIDECAR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| bin("guardrail-sidecar"));
        let pod = format!("{revision}-deployment-7d9f-{}", uuid_like());
        let mut cmd = Command::new(program);
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--upstream", &upstream.url()])
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("K_SERVICE", service)
            .env("K_REVISION", revision)
            .env("K_CONFIGURATION", service)
            .env("POD_NAMESPACE", NS)
            .env("POD_NAME", &pod)
            .env(
                "RUST_LOG",
                std::env::var("GUARDRAIL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let SidecarProcess {
            child,
            proxy,
            admin,
        } = SidecarProcess::spawn(&mut cmd);
        register_pod(cluster, &pod, service, revision, admin);
        Sidecar {
            child,
            proxy,
            admin,
            pod,
        }
    }

    /// `/guardrails` of this sidecar.
    pub async fn guardrails(&self) -> Value {
        reqwest::get(format!("http://{}/guardrails", self.admin))
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("JSON")
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/models/m:predict", self.proxy)
    }

    pub async fn metrics(&self) -> String {
        admin_metrics(self.admin).await
    }

    /// Sum of the samples of `name` whose labels contain `label` ("" for any).
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        metric(&self.metrics().await, name, label)
    }

    /// Waits until the guardrail loop has read the Service and knows its share.
    pub async fn wait_ready(&self, percent: f64) {
        eventually("the sidecar read its Service", WAIT, || async {
            (self.metric("guardrail_traffic_percent", "").await == percent).then_some(())
        })
        .await;
    }
}

/// The Pod Knative would have made for a sidecar: the revision's label, owned by the
/// revision's ReplicaSet, the admin port named `guardrail-admin`, on loopback.
pub fn register_pod(
    cluster: &Cluster,
    name: &str,
    service: &str,
    revision: &str,
    admin: SocketAddr,
) {
    cluster
        .emu
        .put(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {
                    "serving.knative.dev/revision": revision,
                    "serving.knative.dev/service": service,
                },
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": format!("{revision}-deployment-7d9f"), "uid": format!("rs-{revision}"),
                    "controller": true,
                }],
            },
            "spec": { "containers": [{
                "name": "guardrail-sidecar",
                "image": "registry.example/guardrail-sidecar@sha256:00",
                "ports": [{ "name": "guardrail-admin", "containerPort": admin.port() }],
            }]},
            "status": { "phase": "Running", "podIP": admin.ip().to_string() },
        }))
        .expect("register the pod");
}

pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name && series.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        // An empty f64 sum is -0.0; report 0.
        .sum::<f64>()
        + 0.0
}

fn uuid_like() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `n` POSTs one after the other; returns the status codes.
pub async fn load(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut codes = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client
            .post(url)
            .body(r#"{"instances":[[1.0]]}"#)
            .send()
            .await
            .expect("the sidecar answers");
        codes.push(r.status().as_u16());
    }
    codes
}

/// Sends `n` POSTs at once; returns the status codes.
pub async fn load_parallel(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    futures::future::join_all((0..n).map(|_| load(client, url, 1)))
        .await
        .concat()
}

/// Steady background load until dropped.
pub struct BackgroundLoad(tokio::task::JoinHandle<()>);

impl BackgroundLoad {
    pub fn start(url: String, every: Duration) -> BackgroundLoad {
        BackgroundLoad(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = client.post(&url).body("{}").send().await;
            }
        }))
    }
}

impl Drop for BackgroundLoad {
    fn drop(&mut self) {
        self.0.abort();
    }
}
