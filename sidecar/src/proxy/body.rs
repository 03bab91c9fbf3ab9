//! The response side: the body streamed back to the client (teed up to
//! `sanity.maxBodyBytes` for the output checks) and the per-request recorder.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{
    headers::grpc_failed,
    pool::Lease,
    request_body::{copied_body, RequestCopy},
    Shared,
};
use crate::{
    metrics::UpstreamErrorKind,
    sanity::{count_instances, Kind},
    window::{Outcome, SanityOutcome},
};

/// Teed bodies above this size are checked on a separate task, so a large JSON parse
/// never delays the end of the stream for the client.
const INLINE_CHECK_MAX: usize = 64 * 1024;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The whole response reached the client.
    Complete,
    /// The upstream failed mid-body.
    UpstreamReset,
    /// The client went away first.
    ClientGone,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::UpstreamReset => "upstream_reset",
            Self::ClientGone => "client_gone",
        }
    }
}

/// What an access log line says of a request besides its outcome.
pub(super) struct Access {
    pub(super) request_id: http::HeaderValue,
    pub(super) trace_id: Option<String>,
    pub(super) method: http::Method,
    pub(super) path: String,
}

/// Measures one request from arrival to completion; records exactly once (on finish
/// or when dropped).
pub(super) struct Recorder {
    access: Option<Box<Access>>,
    shared: Arc<Shared>,
    start: Instant,
    kind: Option<Kind>,
    copy: Option<RequestCopy>,
    /// 499 (client closed) until a response status is known.
    status: u16,
    error: bool,
    tee: Option<BytesMut>,
    bytes: u64,
    done: bool,
    /// A health probe: proxied, never measured.
    probe: bool,
}

impl Recorder {
    pub(super) fn new(
        shared: Arc<Shared>,
        start: Instant,
        kind: Option<Kind>,
        copy: Option<RequestCopy>,
    ) -> Self {
        Self {
            access: None,
            shared,
            start,
            kind,
            copy,
            status: 499,
            error: false,
            tee: None,
            bytes: 0,
            done: false,
            probe: false,
        }
    }

    /// Marks a health probe: it passes through, but is left out of the window and the
    /// request metrics (counted in `guardrail_probe_requests_total` only).
    pub(super) fn probe(&mut self) {
        self.probe = true;
        self.kind = None;
    }

    pub(super) fn response_started(&mut self, status: u16, grpc_failed: bool, headers: &HeaderMap) {
        self.status = status;
        self.error = status >= 500 || grpc_failed;
        if self.kind.is_some() && (200..300).contains(&status) {
            let limit = self.shared.checker.max_body_bytes();
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            match length {
                Some(n) if n > limit => {}
                Some(n) => self.tee = Some(BytesMut::with_capacity(n)),
                None => self.tee = Some(BytesMut::with_capacity(limit.min(8 * 1024))),
            }
        } else {
            self.kind = None;
        }
    }

    /// Logs this request at its end (the access log is on).
    pub(super) fn access(&mut self, access: Access) {
        self.access = Some(Box::new(access));
    }

    /// A response the proxy made itself (upstream failure or bad request).
    pub(super) fn local_response(&mut self, status: u16) {
        self.status = status;
        self.error = status >= 500;
        self.kind = None;
    }

    fn data(&mut self, data: &Bytes) {
        self.bytes += data.len() as u64;
        if let Some(buf) = &mut self.tee {
            if buf.len() + data.len() <= self.shared.checker.max_body_bytes() {
                buf.extend_from_slice(data);
            } else {
                self.tee = None;
            }
        }
    }

    pub(super) fn finish(&mut self, end: End) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.probe {
            self.shared.metrics.probe_finished();
            return;
        }
        let latency = self.start.elapsed();
        let error = self.error || end == End::UpstreamReset;
        let shared = self.shared.clone();
        if let (Some(a), Some(revision)) = (self.access.take(), shared.access_log.as_deref()) {
            tracing::info!(
                target: "access",
                request_id = a.request_id.to_str().unwrap_or_default(),
                trace_id = a.trace_id.as_deref().unwrap_or_default(),
                method = %a.method,
                path = %a.path,
                status = self.status,
                duration_ms = latency.as_secs_f64() * 1e3,
                error,
                end = end.as_str(),
                revision,
                "request"
            );
        }
        shared
            .metrics
            .request_finished(self.status, error, latency.as_secs_f64(), self.bytes);
        let judge = Judge {
            shared,
            kind: self.kind,
            body: if end == End::Complete {
                self.tee.take()
            } else {
                None
            },
            request: if self.kind == Some(Kind::KserveV1) {
                self.copy.take()
            } else {
                None
            },
            latency,
            error,
        };
        if judge
            .body
            .as_ref()
            .is_some_and(|b| b.len() > INLINE_CHECK_MAX)
        {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { judge.run() });
                return;
            }
        }
        judge.run();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(End::ClientGone);
    }
}

/// The checks and the window record of one finished request.
struct Judge {
    shared: Arc<Shared>,
    kind: Option<Kind>,
    body: Option<BytesMut>,
    /// The request copy, for KServe V1's instance count.
    request: Option<RequestCopy>,
    latency: std::time::Duration,
    error: bool,
}

impl Judge {
    fn run(self) {
        let checker = &self.shared.checker;
        let findings = match (self.kind, &self.body) {
            (Some(kind), Some(body)) => {
                let instances = self
                    .request
                    .as_ref()
                    .and_then(copied_body)
                    .and_then(|b| count_instances(&b));
                Some(checker.check(kind, instances, body))
            }
            _ => None,
        };
        let sanity = match (&findings, self.kind) {
            (Some(f), _) if f.failed.is_empty() => SanityOutcome::Passed,
            (Some(_), _) => SanityOutcome::Failed,
            (None, Some(_)) => SanityOutcome::Unchecked,
            (None, None) => SanityOutcome::NotApplicable,
        };
        match &findings {
            Some(f) => self.shared.metrics.sanity_checked(&f.failed, f.truncated),
            None if sanity == SanityOutcome::Unchecked => self.shared.metrics.sanity_unchecked(),
            None => {}
        }
        self.shared.window.record(&Outcome {
            latency: self.latency,
            error: self.error,
            sanity,
            truncated: findings.as_ref().is_some_and(|f| f.truncated),
            scores: findings.as_ref().map_or(&[], |f| &f.scores),
        });
    }
}

/// Response body from the upstream, measured as it streams.
pub(super) struct ResponseBody {
    inner: Incoming,
    recorder: Recorder,
    /// When the upstream last sent something; the idle timer is armed lazily, at the
    /// first wait, and moved on only when it fires (no timer work per frame).
    last: Instant,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The HTTP/1 connection the body arrives on, handed back when the body has ended.
    lease: Option<Lease>,
}

impl ResponseBody {
    pub(super) fn new(inner: Incoming, recorder: Recorder, lease: Option<Lease>) -> Self {
        Self {
            inner,
            recorder,
            last: Instant::now(),
            idle: None,
            lease,
        }
    }

    /// The whole body has arrived: its connection can carry the next request.
    fn ended(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }

    /// `true` when the upstream has been silent for `upstreamIdleTimeout`.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.recorder.shared.upstream_idle_timeout;
        loop {
            let deadline = self.last + timeout;
            let sleep = self
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(()) if Instant::now() >= self.last + timeout => return true,
                Poll::Ready(()) => continue,
            }
        }
    }
}

/// The error a client's body ends with when the upstream went silent mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} in the middle of the response body")]
struct UpstreamIdle(std::time::Duration);

/// Errors of a proxied body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper may stop polling once `is_end_stream` is true: that is a completion.
        let end = if self.inner.is_end_stream() {
            self.ended();
            End::Complete
        } else {
            End::ClientGone
        };
        self.recorder.finish(end);
    }
}

/// What the proxy answers with: the upstream's streamed body, or a short local one.
pub struct ProxyBody {
    inner: Inner,
}

enum Inner {
    Upstream(ResponseBody),
    Local(Full<Bytes>),
}

impl ProxyBody {
    pub(super) fn upstream(body: ResponseBody) -> Self {
        Self {
            inner: Inner::Upstream(body),
        }
    }

    pub(super) fn local(text: &'static str) -> Self {
        Self {
            inner: Inner::Local(Full::new(Bytes::from_static(text.as_bytes()))),
        }
    }
}

/// A local answer (e.g. the listener's 503 when too many requests are in flight).
impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Local(Full::new(bytes)),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.inner {
            Inner::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Inner::Upstream(body) => {
                let frame = match Pin::new(&mut body.inner).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        if !body.idle_expired(cx) {
                            return Poll::Pending;
                        }
                        let timeout = body.recorder.shared.upstream_idle_timeout;
                        tracing::warn!(
                            ?timeout,
                            "upstream went silent mid-body: cutting the response"
                        );
                        body.recorder
                            .shared
                            .metrics
                            .upstream_error(UpstreamErrorKind::Timeout);
                        body.recorder.finish(End::UpstreamReset);
                        return Poll::Ready(Some(Err(Box::new(UpstreamIdle(timeout)))));
                    }
                };
                if matches!(frame, Some(Ok(_))) {
                    body.last = Instant::now();
                }
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            body.recorder.data(data);
                        } else if let Some(trailers) = frame.trailers_ref() {
                            body.recorder.error |= grpc_failed(trailers);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "upstream failed mid-body");
                        body.recorder
                            .shared
                            .metrics
                            .upstream_error(UpstreamErrorKind::Reset);
                        body.recorder.finish(End::UpstreamReset);
                    }
                    None => {
                        body.ended();
                        body.recorder.finish(End::Complete);
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local(full) => full.is_end_stream(),
            Inner::Upstream(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local(full) => full.size_hint(),
            Inner::Upstream(body) => body.inner.size_hint(),
        }
    }
}
