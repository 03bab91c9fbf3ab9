//! HTTP routes: `/validate`, `/mutate`, `/healthz`, `/readyz` on the webhook listener and
//! `/metrics`, `/healthz`, `/readyz` on the metrics listener.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use crate::{
    admission,
    engine::Engine,
    metrics::{Metrics, RequestLabels, ViolationLabels},
};

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: watch::Receiver<Arc<Engine>>,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// The webhook router (no sockets, so tests can call it directly).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The metrics router.
pub fn metrics_app(state: AppState, registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { encode(&registry) }
            }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// An HTTP error with a JSON body: `{"error": "..."}`.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

/// Reads and drops up to `budget` more bytes of a refused body, for at most
/// [`DISCARD_TIME`]: a client whose upload then ends reads our 413 on a cleanly closed
/// stream (some HTTP/2 clients, curl 7.88 among them, report any reset during an
/// upload as a framing error, even RST_STREAM(NO_ERROR)). Memory stays constant.
async fn discard(body: &mut Body, budget: usize) {
    if budget == 0 {
        return;
    }
    let mut left = budget;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, bytes::Bytes::len);
            if n >= left {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// How long a refused body is read and dropped before the 413 is sent anyway.
const DISCARD_TIME: Duration = Duration::from_secs(2);
/// How much of a refused body is read and dropped, in multiples of the limit.
const DISCARD_FACTOR: usize = 4;

/// A response body that keeps the unread request body until the response is sent.
/// Over HTTP/2, dropping the request body before the response ends resets the stream
/// with CANCEL, and clients report a framing error instead of our 413; dropped after
/// it, h2 sends RST_STREAM(NO_ERROR), the RFC 9113 §8.1 way of saying "stop sending,
/// the answer is complete". HTTP/1.1 closes the connection instead.
struct HoldRequest {
    response: Body,
    _request: Body,
}

impl HoldRequest {
    fn respond(error: ApiError, request: Body) -> Response {
        let (parts, response) = error.into_response().into_parts();
        Response::from_parts(
            parts,
            Body::new(HoldRequest {
                response,
                _request: request,
            }),
        )
    }
}

impl http_body::Body for HoldRequest {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.response).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.response.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.response.size_hint()
    }
}

/// Which admission endpoint a request came to.
#[derive(Clone, Copy)]
enum Endpoint {
    Validate,
    Mutate,
}

async fn validate(State(state): State<AppState>, request: Request) -> Response {
    admit(state, request, Endpoint::Validate).await
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    admit(state, request, Endpoint::Mutate).await
}

async fn admit(state: AppState, request: Request, endpoint: Endpoint) -> Response {
    let id = uuid::Uuid::new_v4();
    let name = match endpoint {
        Endpoint::Validate => "validate",
        Endpoint::Mutate => "mutate",
    };
    let span = tracing::info_span!(
        "admission",
        endpoint = name,
        %id,
        uid = tracing::field::Empty,
        kind = tracing::field::Empty,
        namespace = tracing::field::Empty,
        object = tracing::field::Empty,
        decision = tracing::field::Empty,
    );
    let timeout = state.request_timeout;
    let answer = handle(&state, request, endpoint).instrument(span);
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => {
            state.metrics.reject("timeout");
            warn!(%id, ?timeout, "request timed out");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("request not answered within {timeout:?}"),
            }
            .into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    request: Request,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    debug!("reading request body");
    let limit = state.max_body_bytes;
    let too_large = || {
        state.metrics.reject("too_large");
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds {limit} bytes (--max-body-bytes)"),
        }
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // A body that is being uploaded is read and dropped up to a bound before the 413,
    // so the client reads our answer instead of a reset: over HTTP/2 always; over
    // HTTP/1.1 once reading has begun (hyper sent `100 Continue`). A declared size over
    // the limit on HTTP/1.1 is refused before reading: a client waiting on
    // `Expect: 100-continue` then never uploads.
    let h2 = request.version() == http::Version::HTTP_2;
    let budget = limit.saturating_mul(DISCARD_FACTOR);
    let mut unread = request.into_body();
    if declared.is_some_and(|len| len > limit) {
        discard(&mut unread, if h2 { budget } else { 0 }).await;
        return Ok(HoldRequest::respond(too_large(), unread));
    }
    let body = match Limited::new(&mut unread, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            discard(&mut unread, budget).await;
            return Ok(HoldRequest::respond(too_large(), unread));
        }
        Err(e) => {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("cannot read request body: {e}"),
            })
        }
    };
    let engine = state.engine.borrow().clone();
    let bad_request = |e: admission::BadRequest| {
        state.metrics.reject(e.reason);
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.message,
        }
    };
    if let Endpoint::Mutate = endpoint {
        let mutation = admission::mutate(&engine, &body).map_err(bad_request)?;
        state.metrics.injection(mutation.outcome);
        state
            .metrics
            .mutation_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::Span::current().record("decision", mutation.outcome);
        info!(result = mutation.outcome, "mutation decided");
        return Ok(Json(mutation.review).into_response());
    }
    let decision = admission::decide(&engine, &body)
        .await
        .map_err(bad_request)?;
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            kind: decision.kind.to_string(),
            operation: decision.operation.to_string(),
            decision: decision.decision,
        })
        .inc();
    for (policy, enforced) in &decision.findings {
        let mode = if *enforced { "enforce" } else { "audit" };
        m.violations
            .get_or_create(&ViolationLabels {
                policy: policy.as_str(),
                mode,
            })
            .inc();
    }
    m.decision_seconds.observe(started.elapsed().as_secs_f64());
    let uid = decision
        .review
        .response
        .as_ref()
        .map(|r| r.uid.clone())
        .unwrap_or_default();
    tracing::Span::current().record("uid", uid.as_str());
    tracing::Span::current().record("decision", decision.decision);
    info!(
        workload = decision.kind,
        operation = decision.operation,
        decision = decision.decision,
        violations = decision.findings.len(),
        "admission decided"
    );
    Ok(Json(decision.review).into_response())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

fn encode(registry: &Registry) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            Body::from(text),
        )
            .into_response(),
        Err(e) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("cannot encode metrics: {e}"),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests;
