//! The HTTPS server: accept loop, bearer-token check, fault injection, audit, and
//! dispatch to the resource handlers. Errors become `Status` responses here only.

pub(crate) mod admit;
mod discovery;
mod handlers;
mod query;
mod route;
mod table;
mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audit::{AuditEntry, AuditLog};
use crate::faults::{Decision, Faults, RequestFacts};
use crate::state::State;
use crate::status::ApiError;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the real API server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Everything request handling shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    pub faults: Faults,
    pub audit: AuditLog,
    pub token: Arc<str>,
    /// The user name RBAC denials mention.
    pub user: Arc<str>,
    pub addr: SocketAddr,
    /// Where Services' ports go, for webhook calls (`Emulator::register_service`).
    pub services: crate::webhooks::Services,
    /// Wakes the pod creator when a controller queued pods.
    pub pods_wanted: Arc<tokio::sync::Notify>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Deliberately cut a connection (fault injection): hyper drops it without a response.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by kube-emulator fault injection")
    }
}

impl std::error::Error for ResetConnection {}

/// Serves until `cancel` fires, then drops the listener and every open connection
/// (watches included), as a crashed API server would.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Shared,
    cancel: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                let cancel = cancel.clone();
                connections.spawn(async move {
                    let stream = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let span = tracing::debug_span!(
                            "request",
                            request_id = %uuid::Uuid::new_v4(),
                            method = %req.method(),
                            path = %req.uri().path(),
                        );
                        handle(req, shared.clone(), cancel.clone()).instrument(span)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, %e, "connection ended");
                    }
                });
            }
        }
    }
    connections.abort_all();
}

async fn handle(
    req: Request<Incoming>,
    shared: Shared,
    cancel: CancellationToken,
) -> Result<Response<Body>, ResetConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header_str(header::CONTENT_TYPE);
    let user_agent = header_str(header::USER_AGENT);
    let accept = header_str(header::ACCEPT);
    let authorization = header_str(header::AUTHORIZATION);
    let query = query::Query::parse(&raw_query);

    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(status_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("request body rejected: {e}"),
            )))
        }
    };
    let route = route::Route::parse(&method, &path, &query);
    let mut entry = AuditEntry {
        verb: route.verb().to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        code: 0,
        user_agent: user_agent.clone(),
        field_manager: query.get("fieldManager").unwrap_or("").to_string(),
        time: SystemTime::now(),
    };

    let health = matches!(path.as_str(), "/healthz" | "/livez" | "/readyz");
    if !health && authorization != format!("Bearer {}", shared.token) {
        let response = status_response(&ApiError::unauthorized());
        entry.code = response.status().as_u16();
        shared.audit.push(entry);
        return Ok(response);
    }
    let delay = shared.faults.latency_now();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let route::Route::Resource(r) = &route {
        let facts = RequestFacts {
            verb: r.verb,
            group: &r.group,
            plural: &r.plural,
            namespace: r.namespace.as_deref().unwrap_or(""),
            name: r.name.as_deref().unwrap_or(""),
            user: &shared.user,
        };
        match shared.faults.decide(&facts) {
            Decision::Proceed => {}
            Decision::Reset => {
                shared.audit.push(entry);
                return Err(ResetConnection);
            }
            Decision::Fail(err) => {
                let response = status_response(&err);
                entry.code = err.code;
                shared.audit.push(entry);
                return Ok(response);
            }
        }
    }
    // Admission webhooks see the write before the state does.
    let mut content_type = content_type;
    let mut body = body;
    if let route::Route::Resource(r) = &route {
        match admit_request(&shared, r, &query, &content_type, &body).await {
            Some(Ok(admitted)) => {
                body = admitted;
                content_type = "application/json".into();
            }
            Some(Err(err)) => {
                let response = status_response(&err);
                entry.code = err.code;
                shared.audit.push(entry);
                return Ok(response);
            }
            None => {}
        }
    }
    let ctx = handlers::Ctx {
        shared: &shared,
        query: &query,
        content_type: &content_type,
        user_agent: &user_agent,
        accept: &accept,
        body: &body,
        cancel: &cancel,
    };
    let response = match route {
        route::Route::Resource(r) => handlers::dispatch(&ctx, &r),
        route::Route::NonResource => discovery::serve(&shared, &method, &path),
    }
    .unwrap_or_else(|err| status_response(&err));
    entry.code = response.status().as_u16();
    tracing::debug!(code = entry.code, "answered");
    shared.audit.push(entry);
    if !shared.lock().pending_pods.is_empty() {
        shared.pods_wanted.notify_one();
    }
    Ok(response)
}

/// Runs the admission chain for a create or update of a main resource: the admitted
/// object as JSON, its refusal, or `None` (not an admitted write, or a body the handler
/// will refuse itself).
async fn admit_request(
    shared: &Shared,
    r: &route::ResourceRoute,
    query: &query::Query,
    content_type: &str,
    body: &Bytes,
) -> Option<Result<Bytes, ApiError>> {
    let operation = match r.verb {
        "create" if r.name.is_none() => "CREATE",
        "update" => "UPDATE",
        _ => return None,
    };
    if !r.subresource.is_empty() {
        return None;
    }
    let kind = shared
        .lock()
        .kinds
        .by_path(&r.group, &r.version, &r.plural)?;
    let object: serde_json::Value = if content_type.contains("yaml") {
        serde_saphyr::from_str(std::str::from_utf8(body).ok()?).ok()?
    } else {
        serde_json::from_slice(body).ok()?
    };
    if !object.is_object() {
        return None;
    }
    let write = admit::Write {
        kind,
        namespace: r.namespace.as_deref().unwrap_or(""),
        operation,
        user: &shared.user,
        dry_run: query.get("dryRun") == Some("All"),
    };
    Some(
        admit::admit(shared, &write, object)
            .await
            .map(|o| Bytes::from(serde_json::to_vec(&o).unwrap_or_default())),
    )
}

pub(crate) fn json_response(code: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn status_response(err: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}
