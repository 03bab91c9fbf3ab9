//! Serving one connection with the listener's limits, and shedding one beyond them.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use hyper::{body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::Watcher},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use crate::{
    accept::Conn,
    limits::Limits,
    timeouts::{Activity, HeadTimer, Tracked},
};

/// How often HTTP/2 connections are pinged (a dead peer is dropped after two silent
/// pings); HTTP/2 has no per-head timeout to stand in for.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Time a shed connection gets to send its request and read the 503.
const SHED_TIMEOUT: Duration = Duration::from_secs(2);

/// The base builder for `limits`: bounded heads on both protocols, HTTP/2 pings.
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Serves `conn` until it ends, times out, or `watcher`'s shutdown drains it. `wrap`
/// turns the stream into what HTTP is spoken over (a TLS session, or the stream
/// itself); `None` drops the connection. `builder` is one from [`builder`], owned by
/// this connection (its HTTP/1 timer is the connection's own).
pub async fn serve<W, I, S, B>(
    conn: Conn,
    mut builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    wrap: impl FnOnce(TcpStream) -> W,
    service: S,
) where
    W: Future<Output = Option<I>>,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Conn { stream, peer, slot } = conn;
    let (listener, limits, metrics) = (slot.shared.name, &slot.shared.limits, &slot.shared.metrics);
    let activity = Arc::new(Activity::default());
    let header = limits.header_read_timeout;
    builder
        .http1()
        .timer(HeadTimer {
            activity: activity.clone(),
            header,
            idle: limits.idle_timeout,
            metrics: metrics.clone(),
            listener,
        })
        .header_read_timeout(header);
    // The handshake (if any) counts against the first head's time.
    let Ok(Some(io)) = tokio::time::timeout(header, wrap(stream)).await else {
        metrics.timeout(listener, "first_bytes");
        return tracing::debug!(%peer, listener, "connection not set up in time");
    };
    let io = Tracked::new(io, activity.clone());
    let connection = watcher.watch(
        builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned(),
    );
    tokio::select! {
        ended = connection => {
            if let Err(e) = ended {
                tracing::debug!(%peer, listener, error = %e, "connection ended with an error");
            }
        }
        () = activity.silent_for(header) => {
            metrics.timeout(listener, "first_bytes");
            tracing::debug!(%peer, listener, "closing a connection that sent no request in time");
        }
    }
}

/// Answers a connection beyond `maxConnections` with 503 and `Retry-After`, then
/// closes it, within [`SHED_TIMEOUT`].
pub async fn shed(stream: TcpStream) {
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(overloaded::<http_body_util::Full<Bytes>>())
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(SHED_TIMEOUT, conn).await;
}

/// The 503 for a request or connection beyond a bound (`Retry-After: 1`, closed).
pub fn overloaded<B: From<Bytes>>() -> Response<B> {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::RETRY_AFTER, "1")
        .header(header::CONNECTION, "close")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(B::from(Bytes::from_static(b"overloaded: retry later\n")))
        .expect("static response")
}
