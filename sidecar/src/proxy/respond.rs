//! The one place where failures become HTTP responses.

use http::{HeaderValue, Response};

use super::{
    body::{ProxyBody, Recorder},
    headers::X_REQUEST_ID,
    pool::UpstreamError,
};
use crate::metrics::UpstreamErrorKind;

/// Status and body for an upstream failure: 503 when the model server cannot be
/// reached (not listening yet, or gone), 504 when it is too slow, 502 otherwise.
fn status_of(kind: UpstreamErrorKind) -> (u16, &'static str) {
    match kind {
        UpstreamErrorKind::Connect => (
            503,
            "upstream unavailable: cannot connect to the model server\n",
        ),
        UpstreamErrorKind::Timeout => (
            504,
            "upstream timeout: the model server did not answer in time\n",
        ),
        UpstreamErrorKind::Reset => (502, "bad gateway: the model server closed the connection\n"),
        UpstreamErrorKind::Protocol => (
            502,
            "bad gateway: the model server sent an invalid response\n",
        ),
    }
}

pub(super) fn upstream_failure(
    kind: UpstreamErrorKind,
    request_id: &HeaderValue,
    recorder: Recorder,
) -> Response<ProxyBody> {
    let (status, text) = status_of(kind);
    local(status, text, request_id, recorder)
}

/// A short text response made by the proxy; the request is recorded now.
pub(super) fn local(
    status: u16,
    text: &'static str,
    request_id: &HeaderValue,
    mut recorder: Recorder,
) -> Response<ProxyBody> {
    recorder.local_response(status);
    drop(recorder);
    let mut response = Response::new(ProxyBody::local(text));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    response
}

/// The first hyper error in `e`'s chain (itself included).
fn hyper_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        source = s.source();
    }
    None
}

/// The error of the HTTP exchange; `None` when no connection was made.
fn exchange(e: &UpstreamError) -> Option<&(dyn std::error::Error + 'static)> {
    match e {
        UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => None,
        UpstreamError::Http2(e) if e.is_connect() => None,
        UpstreamError::Http1(e) => Some(e),
        UpstreamError::Http2(e) => Some(e),
    }
}

/// Sorts an upstream failure into the kinds we count.
pub(super) fn classify(e: &UpstreamError) -> UpstreamErrorKind {
    let Some(exchange) = exchange(e) else {
        return UpstreamErrorKind::Connect;
    };
    match hyper_error(exchange) {
        Some(h) if h.is_parse() || h.is_parse_status() || h.is_user() => {
            UpstreamErrorKind::Protocol
        }
        _ => UpstreamErrorKind::Reset,
    }
}

/// The upstream closed the connection before answering (a kept-alive connection it had
/// just closed): nothing was processed, so a small request may be sent again once.
pub(super) fn closed_before_response(e: &UpstreamError) -> bool {
    let mut source = exchange(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            return matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted);
        }
        source = s.source();
    }
    false
}
