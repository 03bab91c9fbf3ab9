//! In-process harness: a sidecar on ephemeral ports in front of a scriptable upstream.

#![allow(dead_code)]

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use guardrail_sidecar::{Config, Identity, Sidecar, Snapshot, Window};
use http_body_util::combinators::BoxBody;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub type UpBody = BoxBody<Bytes, std::io::Error>;

/// Serves `handler` on an ephemeral port (HTTP/1.1 and h2c) until the test ends.
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<UpBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
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

pub struct Running {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub window: Arc<Window>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.window.snapshot()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends the shutdown signal (as SIGTERM would).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until `n` requests have been recorded in the window.
    pub async fn wait_recorded(&self, n: u64) -> Snapshot {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.snapshot();
            if s.requests >= n {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} requests recorded",
                s.requests
            );
            self.window.completed().await;
        }
    }
}

/// Starts a sidecar for `upstream` with extra YAML config lines.
pub async fn sidecar(upstream: SocketAddr, extra_yaml: &str) -> Running {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let yaml = format!("upstream: http://{upstream}\n{extra_yaml}");
    let config = Config::from_yaml(&yaml).expect("test config");
    let identity = Identity {
        revision: "model-00002".into(),
        ..Identity::default()
    };
    let sidecar = Sidecar::new(config, identity).expect("sidecar");
    let window = sidecar.window();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let (proxy, admin_addr) = (
        listener.local_addr().expect("addr"),
        admin.local_addr().expect("addr"),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sidecar
            .serve(listener, admin, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    Running {
        proxy,
        admin: admin_addr,
        window,
        stop: Some(stop),
        task,
    }
}

/// The value of one sample line `name{labels} value` in a metrics text.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}
