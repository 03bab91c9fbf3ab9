//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/guardrails`.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::Serialize;

use crate::{
    guardrails::Local, identity::Identity, metrics::Metrics, readiness::Readiness, window::Snapshot,
};

/// How long `/readyz` waits for the upstream.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the admin endpoints; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    upstream: String,
    upstream_host: String,
    readiness_path: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
    draining: Arc<AtomicBool>,
    local: Arc<Local>,
    /// The model's own probe's last result, when `upstreamProbe` is set.
    model: Option<Arc<Readiness>>,
}

#[derive(Serialize)]
struct GuardrailsBody<'a> {
    identity: &'a Identity,
    window: Snapshot,
    /// The latest verdict of the revision (when this pod judges) or why not.
    verdict: serde_json::Value,
}

impl Admin {
    pub fn new(
        metrics: Arc<Metrics>,
        upstream: &str,
        upstream_host: String,
        readiness_path: Option<String>,
        draining: Arc<AtomicBool>,
        local: Arc<Local>,
        model: Option<Arc<Readiness>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics,
                upstream: upstream.trim_end_matches('/').to_string(),
                upstream_host,
                readiness_path,
                client: Client::builder(TokioExecutor::new()).build_http(),
                draining,
                local,
                model,
            }),
        }
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
        let inner = &self.inner;
        let response = match req.uri().path() {
            "/metrics" => match inner.metrics.encode(&inner.local.window().snapshot()) {
                Ok(text) => with_type(
                    text.into(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {e}\n"),
                ),
            },
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.ready().await,
            "/guardrails" => {
                let body = GuardrailsBody {
                    identity: &inner.local.identity,
                    window: inner.local.window().snapshot(),
                    verdict: inner.local.verdict(),
                };
                match serde_json::to_vec(&body) {
                    Ok(json) => with_type(json.into(), "application/json"),
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode: {e}\n"),
                    ),
                }
            }
            // What the revision's judge reads from every pod.
            "/guardrails/summary" => match serde_json::to_vec(&inner.local.report().to_wire()) {
                Ok(json) => with_type(json.into(), "application/json"),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode: {e}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz, /readyz, /guardrails or /guardrails/summary\n"
                    .into(),
            ),
        };
        Ok(response)
    }

    /// Ready when not draining and the upstream answers: the last result of
    /// `upstreamProbe` (answered at once), else 2xx on `readinessPath`, else a TCP
    /// connect.
    async fn ready(&self) -> Response<Full<Bytes>> {
        let inner = &self.inner;
        if inner.draining.load(Ordering::Acquire) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
        }
        if let Some(model) = &inner.model {
            return match model.get() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
            };
        }
        let probe = async {
            match &inner.readiness_path {
                Some(path) => {
                    let uri = format!("{}{}", inner.upstream, path);
                    let uri: http::Uri = uri
                        .parse()
                        .map_err(|e| format!("bad probe URL {uri}: {e}"))?;
                    let status = inner
                        .client
                        .get(uri)
                        .await
                        .map_err(|e| format!("upstream {path}: {e}"))?
                        .status();
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("upstream {path} answered {status}"))
                    }
                }
                None => tokio::net::TcpStream::connect(&inner.upstream_host)
                    .await
                    .map(drop)
                    .map_err(|e| format!("upstream {}: {e}", inner.upstream_host)),
            }
        };
        match tokio::time::timeout(READY_PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
            Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: upstream probe timed out\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = with_type(body.into(), "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
