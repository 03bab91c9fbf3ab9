//! Header and idle timeouts for HTTP/1.1, told apart. hyper has one timer, started
//! whenever it waits for a request head: on a keep-alive connection that includes the
//! idle time before the next request, so a 10 s header timeout would also close idle
//! connections after 10 s, racing the requests queue-proxy sends on them. Here the
//! connection's reads and hyper's timer share an [`Activity`]: the timer hyper arms
//! waits `idleTimeout` for the first byte of the next head, then `headerReadTimeout`
//! from that byte for the rest. A new connection's first head gets `headerReadTimeout`
//! from the accept, as hyper does.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use hyper::rt::{Sleep, Timer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

use crate::metrics::ListenerMetrics;

/// Bytes of the HTTP/2 connection preface: protocol detection reads at most this many.
const PREFACE: u64 = 24;

#[derive(Debug, Default)]
struct State {
    /// Heads hyper has waited for on this connection.
    arms: u64,
    /// hyper waits for a head now.
    waiting: bool,
    /// When the first byte of the awaited head arrived.
    first_byte: Option<Instant>,
    /// Bytes read from the connection so far.
    bytes: u64,
}

/// What a connection's reads and its HTTP/1 timer share.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    state: Mutex<State>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, n: usize) {
        let mut s = self.lock();
        s.bytes += n as u64;
        if s.waiting && s.first_byte.is_none() {
            s.first_byte = Some(Instant::now());
        }
    }

    fn arm(&self) -> u64 {
        let mut s = self.lock();
        s.arms += 1;
        s.waiting = true;
        s.first_byte = None;
        s.arms
    }

    /// The end of wait `arm` (a later wait may have begun already).
    fn disarm(&self, arm: u64) {
        let mut s = self.lock();
        if s.arms == arm {
            s.waiting = false;
        }
    }

    /// Resolves when, `within` after the accept, the peer has neither sent enough to
    /// pick a protocol nor started an HTTP/1 head: protocol detection has no timeout
    /// of its own. Pending forever otherwise.
    pub(crate) async fn silent_for(&self, within: Duration) {
        tokio::time::sleep(within).await;
        let spoke = {
            let s = self.lock();
            s.arms > 0 || s.bytes >= PREFACE
        };
        if spoke {
            std::future::pending::<()>().await;
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection whose reads are reported to its [`Activity`].
    pub(crate) struct Tracked<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
    }
}

impl<T> Tracked<T> {
    pub(crate) fn new(io: T, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.activity.read(n);
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The HTTP/1 timer of one connection (hyper arms it only for request heads).
#[derive(Clone)]
pub(crate) struct HeadTimer {
    pub(crate) activity: Arc<Activity>,
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    pub(crate) metrics: ListenerMetrics,
    pub(crate) listener: &'static str,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        let now = Instant::now();
        let arm = self.activity.arm();
        let first = arm == 1;
        let until = if first {
            now + self.header
        } else {
            now + self.idle
        };
        Box::pin(HeadSleep {
            timer: self.clone(),
            arm,
            first,
            armed_at: now,
            sleep: Box::pin(tokio::time::sleep_until(until)),
        })
    }
}

/// The wait for one request head.
struct HeadSleep {
    timer: HeadTimer,
    arm: u64,
    first: bool,
    armed_at: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeadSleep {
    /// The deadline now, and the phase it belongs to.
    fn target(&self) -> (Instant, &'static str) {
        if self.first {
            return (self.armed_at + self.timer.header, "header");
        }
        match self.timer.activity.lock().first_byte {
            Some(t) => (t + self.timer.header, "header"),
            None => (self.armed_at + self.timer.idle, "idle"),
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this on every wake-up of the connection, so a first byte (a
        // read) moves the deadline before it can pass unseen.
        let (deadline, phase) = self.target();
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer.metrics.timeout(self.timer.listener, phase);
                tracing::debug!(
                    listener = self.timer.listener,
                    phase,
                    "closing a connection: request head not received in time"
                );
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.timer.activity.disarm(self.arm);
    }
}
