//! A bound on requests in flight: beyond it, 503 with `Retry-After` (counted), never a
//! queue that grows. The permit lives as long as the response body, so a streaming
//! response counts until its last byte.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{ListenerLabel, ListenerMetrics};

/// The in-flight bound of one listener; cheap to clone.
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    metrics: ListenerMetrics,
    listener: &'static str,
}

impl InFlight {
    pub fn new(max: usize, listener: &'static str, metrics: ListenerMetrics) -> Self {
        metrics.init(listener);
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
            metrics,
            listener,
        }
    }

    /// A slot for one request, or `None` (counted) when all are taken.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics
                .requests_shed
                .get_or_create(&ListenerLabel {
                    listener: self.listener,
                })
                .inc();
        }
        permit
    }
}

pin_project_lite::pin_project! {
    /// A body that holds an in-flight slot until it ends or is dropped.
    pub struct HoldPermit<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B> HoldPermit<B> {
    pub fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { inner, permit }
    }
}

impl<B: Body> Body for HoldPermit<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.permit.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
