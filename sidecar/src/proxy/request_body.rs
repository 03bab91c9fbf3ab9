//! The request body towards the upstream: streamed as it arrives, with a bounded copy
//! of small bodies kept on the side (for one replay, and KServe V1 instance counting).

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::Shared;

/// Requests whose body is at most this long keep a copy while streaming, so a request
/// that lost a race with an upstream closing its kept-alive connection can be sent
/// again once (uvicorn, hence KServe, closes after a 500 without `Connection: close`).
pub(super) const REPLAY_MAX: usize = 64 * 1024;

/// A bounded copy of the request body, taken as it streams past.
pub(super) struct CopyState {
    bytes: BytesMut,
    limit: usize,
    complete: bool,
    overflowed: bool,
}

pub(super) type RequestCopy = Arc<Mutex<CopyState>>;

pub(super) fn new_copy(limit: usize) -> RequestCopy {
    Arc::new(Mutex::new(CopyState {
        bytes: BytesMut::new(),
        limit,
        complete: false,
        overflowed: false,
    }))
}

/// The whole body, if it has been read completely and fitted the copy.
pub(super) fn copied_body(copy: &RequestCopy) -> Option<Bytes> {
    let c = copy.lock().unwrap_or_else(|p| p.into_inner());
    (c.complete && !c.overflowed).then(|| Bytes::copy_from_slice(&c.bytes))
}

/// Request body towards the upstream: the client's stream, or a replayed copy.
pub struct RequestBody {
    source: Source,
    shared: Arc<Shared>,
}

enum Source {
    Stream {
        inner: Incoming,
        copy: Option<RequestCopy>,
    },
    Replay(Option<Bytes>),
}

impl RequestBody {
    pub(super) fn new(inner: Incoming, shared: Arc<Shared>, copy: Option<RequestCopy>) -> Self {
        Self {
            source: Source::Stream { inner, copy },
            shared,
        }
    }

    pub(super) fn replay(bytes: Bytes, shared: Arc<Shared>) -> Self {
        Self {
            source: Source::Replay(Some(bytes).filter(|b| !b.is_empty())),
            shared,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let (inner, copy) = match &mut this.source {
            Source::Replay(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Source::Stream { inner, copy } => (inner, copy),
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        // hyper stops polling once a sized body is complete: that is the end too.
        let ended = frame.is_none() || inner.is_end_stream();
        let data = match &frame {
            Some(Ok(frame)) => frame.data_ref(),
            _ => None,
        };
        if let Some(data) = data {
            this.shared.metrics.request_bytes(data.len() as u64);
        }
        if let Some(c) = copy.as_ref().filter(|_| data.is_some() || ended) {
            // One short, uncontended lock per frame, only for small (copied) bodies.
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(data) = data {
                if !c.overflowed && c.bytes.len() + data.len() <= c.limit {
                    c.bytes.extend_from_slice(data);
                } else {
                    c.overflowed = true;
                    c.bytes = BytesMut::new();
                }
            }
            c.complete |= ended;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Stream { inner, .. } => inner.is_end_stream(),
            Source::Replay(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Stream { inner, .. } => inner.size_hint(),
            Source::Replay(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
