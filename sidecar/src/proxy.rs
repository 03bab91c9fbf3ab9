//! The data path: forwards each request to the upstream model server and measures it
//! on the way back. It waits on nothing but the upstream: measurements are atomic adds
//! and one short per-sub-window lock at completion.

mod body;
mod headers;
mod pool;
mod request_body;
mod respond;

use std::{convert::Infallible, sync::Arc, time::Duration};

use http::{uri::Authority, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::time::Instant;
use tracing::Instrument as _;

pub use body::ProxyBody;
pub use headers::{grpc_failed, strip_hop_by_hop, X_REQUEST_ID};
pub use request_body::RequestBody;

use crate::{
    config::Config,
    error::SidecarError,
    metrics::{Metrics, UpstreamErrorKind},
    sanity::{Checker, Kind},
    window::Window,
};
use body::{Recorder, ResponseBody};
use pool::{Lease, Pool, UpstreamError};

/// Idle upstream connections are kept this long for reuse (keep-alive pooling).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the data path shares between requests.
pub(crate) struct Shared {
    h1: Arc<Pool>,
    h2: Client<HttpConnector, RequestBody>,
    authority: Authority,
    /// `Host` for HTTP/1 requests that came without one: the upstream's authority.
    host: http::HeaderValue,
    upstream_timeout: Duration,
    pub(crate) upstream_idle_timeout: Duration,
    /// The revision, for access log lines; `None` when the access log is off.
    pub(crate) access_log: Option<Arc<str>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) window: Arc<Window>,
    pub(crate) checker: Arc<Checker>,
}

/// The reverse proxy; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn new(
        config: &Config,
        revision: &str,
        metrics: Arc<Metrics>,
        window: Arc<Window>,
        checker: Arc<Checker>,
    ) -> Result<Self, SidecarError> {
        let authority = config.upstream_authority()?;
        // An authority is valid header text.
        let host = http::HeaderValue::from_str(authority.as_str())
            .map_err(|e| SidecarError::invalid("upstream", e.to_string()))?;
        let h1 = Arc::new(Pool::new(
            &authority,
            config.connect_timeout,
            POOL_IDLE_TIMEOUT,
            metrics.clone(),
        ));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        // gRPC and other h2c clients get an h2c upstream (prior knowledge), so trailers
        // and multiplexing survive the hop.
        let h2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_only(true)
            .build(connector);
        Ok(Self {
            shared: Arc::new(Shared {
                h1,
                h2,
                authority,
                host,
                upstream_timeout: config.upstream_timeout,
                upstream_idle_timeout: config.upstream_idle_timeout,
                access_log: config.access_log.then(|| Arc::from(revision)),
                metrics,
                window,
                checker,
            }),
        })
    }

    /// Proxies one request. Never fails: upstream failures become 502/503/504.
    pub async fn handle(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let start = Instant::now();
        self.shared.metrics.request_started();
        let (mut parts, body) = req.into_parts();
        let request_id = headers::ensure_request_id(&mut parts.headers);
        // A debug-level span: free when disabled, and every warning carries the id too.
        let span = tracing::debug_span!(
            "request",
            request_id = ?request_id,
            method = %parts.method,
            path = %parts.uri.path()
        );
        self.forward(start, parts, body, request_id)
            .instrument(span)
            .await
    }

    async fn forward(
        &self,
        start: Instant,
        mut parts: http::request::Parts,
        body: Incoming,
        request_id: http::HeaderValue,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let shared = &self.shared;
        headers::strip_hop_by_hop(&mut parts.headers);
        let kind = shared.checker.detect(parts.uri.path());
        let empty = body.is_end_stream();
        let copy =
            copy_limit(&parts.headers, empty, kind, &shared.checker).map(request_body::new_copy);
        // Until the response is handed over, dropping the recorder (client gone) still
        // counts the request and releases the in-flight gauge.
        let mut recorder = Recorder::new(shared.clone(), start, kind, copy.clone());
        if headers::is_probe(&parts.headers) {
            recorder.probe();
        }
        if shared.access_log.is_some() {
            recorder.access(body::Access {
                request_id: request_id.clone(),
                trace_id: headers::trace_id(&parts.headers),
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
            });
        }

        let h2 = parts.version == Version::HTTP_2;
        let target = if h2 {
            // hyper-util's client takes the absolute form and sends what HTTP/2 needs.
            upstream_uri(&shared.authority, &parts.uri)
        } else {
            Ok(origin_form(&shared.authority, &parts))
        };
        parts.uri = match target {
            Ok(uri) => uri,
            Err(e) => {
                tracing::warn!(request_id = ?request_id, error = %e, "request target cannot be forwarded");
                return Ok(respond::local(
                    400,
                    "bad request target\n",
                    &request_id,
                    recorder,
                ));
            }
        };
        if !h2 {
            parts.version = Version::HTTP_11;
            // What hyper-util's client did: the client's Host stays, else the upstream's.
            parts
                .headers
                .entry(http::header::HOST)
                .or_insert_with(|| shared.host.clone());
        }
        // Only empty or small, copied requests can be replayed once sent: keep their
        // head for that.
        let mut retry_head = (empty || copy.is_some()).then(|| {
            let mut head = Request::new(());
            *head.method_mut() = parts.method.clone();
            *head.uri_mut() = parts.uri.clone();
            *head.version_mut() = parts.version;
            *head.headers_mut() = parts.headers.clone();
            head
        });
        let deadline = Instant::now() + shared.upstream_timeout;
        let mut request =
            Request::from_parts(parts, RequestBody::new(body, shared.clone(), copy.clone()));
        let exchange = async {
            loop {
                let error = match self.send(h2, request).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => e,
                };
                // Taking the head allows one replay at most.
                let replay = if respond::closed_before_response(&error) {
                    retry_head.take().and_then(|head| {
                        let bytes = if empty {
                            Some(bytes::Bytes::new())
                        } else {
                            copy.as_ref().and_then(request_body::copied_body)
                        };
                        bytes.map(|bytes| (head, bytes))
                    })
                } else {
                    None
                };
                let Some((head, bytes)) = replay else {
                    return Err(error);
                };
                tracing::debug!(request_id = ?request_id, error = %error, "upstream closed a kept-alive connection: sending again");
                let (head, ()) = head.into_parts();
                request = Request::from_parts(head, RequestBody::replay(bytes, shared.clone()));
            }
        };
        let (response, lease) = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                let kind = respond::classify(&error);
                tracing::warn!(request_id = ?request_id, kind = kind.as_str(), error = ?error, "upstream request failed");
                shared.metrics.upstream_error(kind);
                return Ok(respond::upstream_failure(kind, &request_id, recorder));
            }
            Err(_) => {
                tracing::warn!(request_id = ?request_id, timeout = ?shared.upstream_timeout, "upstream did not answer in time");
                shared.metrics.upstream_error(UpstreamErrorKind::Timeout);
                return Ok(respond::upstream_failure(
                    UpstreamErrorKind::Timeout,
                    &request_id,
                    recorder,
                ));
            }
        };
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(X_REQUEST_ID.clone(), request_id);
        recorder.response_started(
            parts.status.as_u16(),
            grpc_failed(&parts.headers),
            &parts.headers,
        );
        Ok(Response::from_parts(
            parts,
            ProxyBody::upstream(ResponseBody::new(body, recorder, lease)),
        ))
    }

    /// One exchange with the upstream: HTTP/1 through our pool, h2c through
    /// hyper-util's multiplexing client.
    async fn send(
        &self,
        h2: bool,
        request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), UpstreamError> {
        if h2 {
            let response = self.shared.h2.request(request).await;
            return response.map(|r| (r, None)).map_err(UpstreamError::Http2);
        }
        let (response, lease) = self.shared.h1.send(request).await?;
        Ok((response, Some(lease)))
    }
}

/// How much of the request body to copy: enough to replay small requests (and to count
/// KServe V1 instances); `None` for large or unknown-length bodies.
fn copy_limit(
    headers: &http::HeaderMap,
    empty: bool,
    kind: Option<Kind>,
    checker: &Checker,
) -> Option<usize> {
    let limit = if kind == Some(Kind::KserveV1) {
        checker.max_body_bytes().max(request_body::REPLAY_MAX)
    } else {
        request_body::REPLAY_MAX
    };
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        // An empty body needs no copy to be replayed.
        _ if empty => None,
        Some(n) if n <= limit => Some(n),
        None if kind == Some(Kind::KserveV1) => Some(limit),
        _ => None,
    }
}

/// The request target of an HTTP/1 request to the upstream: the path and query
/// (origin form), or the upstream's authority for CONNECT (authority form).
fn origin_form(authority: &Authority, parts: &http::request::Parts) -> Uri {
    if parts.method == http::Method::CONNECT {
        return Uri::from(authority.clone());
    }
    match parts.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// `http://<upstream>/<original path and query>`.
fn upstream_uri(authority: &Authority, original: &Uri) -> Result<Uri, http::Error> {
    let mut b = Uri::builder().scheme("http").authority(authority.clone());
    if let Some(pq) = original.path_and_query() {
        b = b.path_and_query(pq.clone());
    } else {
        b = b.path_and_query("/");
    }
    b.build()
}
