//! The model's own readiness probe, run by the sidecar.
//!
//! When the sidecar is injected into a Knative pod, queue-proxy probes the sidecar's
//! `/readyz` instead of the model (the injector moved the user container's probe entry
//! here, `upstreamProbe`). So `/readyz` must mean what the original probe meant: ready
//! only when the model answers it. queue-proxy probes aggressively (every 25 ms while
//! not ready when `periodSeconds` is 0), so the probe runs in the background and
//! `/readyz` answers from the last result without waiting on the model.
//!
//! Handlers as the kubelet runs them (`pkg/probe` in kubernetes): HTTP GET succeeds on
//! 200–399, TCP on an accepted connection, gRPC on `grpc.health.v1.Health/Check`
//! answering SERVING. Success and failure thresholds are applied by whoever probes us,
//! so each result here is one raw attempt.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use k8s_openapi::{api::core::v1::Probe, apimachinery::pkg::util::intstr::IntOrString};
use tokio_util::sync::CancellationToken;

use crate::error::SidecarError;

/// Period between attempts while the model is not ready (queue-proxy waits on it).
const NOT_READY_PERIOD: Duration = Duration::from_millis(100);
/// Longest period between attempts once ready.
const READY_PERIOD_MAX: Duration = Duration::from_secs(1);
/// Kubernetes' default probe timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one attempt does.
#[derive(Debug, Clone, PartialEq)]
enum Handler {
    Http {
        uri: http::Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    Tcp {
        address: String,
    },
    Grpc {
        uri: http::Uri,
        service: String,
    },
}

/// The model's readiness probe, parsed once at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamProbe {
    handler: Handler,
    timeout: Duration,
    ready_period: Duration,
}

impl UpstreamProbe {
    /// Reads a Kubernetes probe (`upstreamProbe`). The host defaults to 127.0.0.1 (the
    /// model is in the pod); ports must be numbers (names belong to the model's
    /// container and cannot be resolved here).
    pub fn from_probe(probe: &Probe) -> Result<Self, SidecarError> {
        let invalid = |field: &str, message: String| {
            SidecarError::invalid(format!("upstreamProbe.{field}"), message)
        };
        let port = |field: &str, port: &IntOrString| match port {
            IntOrString::Int(p) => u16::try_from(*p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(field, format!("{p} is not a port"))),
            IntOrString::String(s) => s.parse::<u16>().map_err(|_| {
                invalid(
                    field,
                    format!("{s:?} is a port name: use the model's port number"),
                )
            }),
        };
        let host = |h: &Option<String>| {
            h.as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("127.0.0.1")
                .to_string()
        };
        let authority = |host: &str, port: u16| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        };
        let handler = if let Some(get) = &probe.http_get {
            if get
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
            {
                return Err(invalid(
                    "httpGet.scheme",
                    "only HTTP is probed (the model is in the same pod)".into(),
                ));
            }
            let port = port("httpGet.port", &get.port)?;
            let path = get.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let uri = format!("http://{}{path}", authority(&host(&get.host), port));
            let uri = uri
                .parse()
                .map_err(|e| invalid("httpGet.path", format!("{uri}: {e}")))?;
            let mut headers = Vec::new();
            for h in get.http_headers.as_deref().unwrap_or_default() {
                let name = HeaderName::try_from(h.name.as_str())
                    .map_err(|e| invalid("httpGet.httpHeaders", format!("{:?}: {e}", h.name)))?;
                let value = HeaderValue::try_from(h.value.as_str())
                    .map_err(|e| invalid("httpGet.httpHeaders", format!("{:?}: {e}", h.value)))?;
                headers.push((name, value));
            }
            Handler::Http { uri, headers }
        } else if let Some(tcp) = &probe.tcp_socket {
            let port = port("tcpSocket.port", &tcp.port)?;
            Handler::Tcp {
                address: authority(&host(&tcp.host), port),
            }
        } else if let Some(grpc) = &probe.grpc {
            let port = port("grpc.port", &IntOrString::Int(grpc.port))?;
            let uri = format!(
                "http://{}/grpc.health.v1.Health/Check",
                authority("127.0.0.1", port)
            );
            Handler::Grpc {
                uri: uri.parse().expect("a constant path parses"),
                service: grpc.service.clone().unwrap_or_default(),
            }
        } else {
            let what = if probe.exec.is_some() {
                "exec probes run in the model's container, not here: give queue-proxy a tcpSocket"
            } else {
                "no handler"
            };
            return Err(invalid(
                "",
                format!("needs httpGet, tcpSocket or grpc ({what})"),
            ));
        };
        let seconds = |s: Option<i32>| s.filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
        Ok(Self {
            handler,
            timeout: seconds(probe.timeout_seconds).unwrap_or(DEFAULT_TIMEOUT),
            ready_period: seconds(probe.period_seconds)
                .unwrap_or(READY_PERIOD_MAX)
                .min(READY_PERIOD_MAX),
        })
    }
}

/// The last result, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct Readiness {
    /// `Ok` when the last attempt passed; the reason otherwise. `None` before the first.
    last: Mutex<Option<Result<(), String>>>,
}

impl Readiness {
    pub fn get(&self) -> Result<(), String> {
        match &*self.last.lock().expect("not poisoned") {
            Some(result) => result.clone(),
            None => Err("the model has not been probed yet".into()),
        }
    }

    fn set(&self, result: Result<(), String>) {
        *self.last.lock().expect("not poisoned") = Some(result);
    }
}

/// Probes until `stop`, writing each result into `readiness`.
pub async fn run(probe: UpstreamProbe, readiness: Arc<Readiness>, stop: CancellationToken) {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let h1: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(http.clone());
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(http);
    let mut was_ready = None;
    loop {
        let attempt = attempt(&probe, &h1, &h2);
        let result = match tokio::time::timeout(probe.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", probe.timeout)),
        };
        let ready = result.is_ok();
        if was_ready != Some(ready) {
            match &result {
                Ok(()) => tracing::info!("the model passes its readiness probe"),
                Err(why) => tracing::info!(reason = %why, "the model fails its readiness probe"),
            }
            was_ready = Some(ready);
        }
        readiness.set(result);
        let period = if ready {
            probe.ready_period
        } else {
            NOT_READY_PERIOD
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

async fn attempt(
    probe: &UpstreamProbe,
    h1: &Client<HttpConnector, Empty<Bytes>>,
    h2: &Client<HttpConnector, Full<Bytes>>,
) -> Result<(), String> {
    match &probe.handler {
        Handler::Tcp { address } => tokio::net::TcpStream::connect(address)
            .await
            .map(drop)
            .map_err(|e| format!("tcp {address}: {e}")),
        Handler::Http { uri, headers } => {
            let mut request = Request::get(uri.clone());
            // As the kubelet sends it; our own proxy never counts probe requests.
            request = request.header(header::USER_AGENT, "kube-probe/guardrail");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
            let response = h1
                .request(request)
                .await
                .map_err(|e| format!("GET {uri}: {e}"))?;
            let status = response.status();
            // Read (and drop) the body so the connection is reused.
            let _ = response.into_body().collect().await;
            if (200..400).contains(&status.as_u16()) {
                Ok(())
            } else {
                Err(format!("GET {uri} answered {status}"))
            }
        }
        Handler::Grpc { uri, service } => grpc_check(h2, uri, service).await,
    }
}

/// `grpc.health.v1.HealthCheckRequest` (grpc/grpc-proto `grpc/health/v1/health.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; `status` 1 is SERVING.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

async fn grpc_check(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &http::Uri,
    service: &str,
) -> Result<(), String> {
    use prost::Message as _;
    let message = HealthCheckRequest {
        service: service.to_string(),
    }
    .encode_to_vec();
    // A gRPC message: uncompressed flag, 4-byte big-endian length, protobuf bytes.
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = Request::post(uri.clone())
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(header::USER_AGENT, "kube-probe/guardrail")
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("grpc health {uri}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("grpc health answered HTTP {}", response.status()));
    }
    let header_status = response.headers().get("grpc-status").cloned();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("grpc health body: {e}"))?;
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    let status = trailer_status.or(header_status);
    if status.as_ref().map(HeaderValue::as_bytes) != Some(b"0") {
        return Err(format!(
            "grpc health failed: grpc-status {}",
            status
                .as_ref()
                .and_then(|s| s.to_str().ok())
                .unwrap_or("missing")
        ));
    }
    let body = collected.to_bytes();
    let message = body
        .get(5..)
        .filter(|m| {
            body.len() >= 5
                && m.len() == u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize
        })
        .ok_or_else(|| "grpc health: malformed response message".to_string())?;
    let answer = HealthCheckResponse::decode(message).map_err(|e| format!("grpc health: {e}"))?;
    if answer.status == SERVING {
        Ok(())
    } else {
        Err(format!(
            "grpc health: status {} (not SERVING)",
            answer.status
        ))
    }
}

#[cfg(test)]
mod tests;
