//! Accepting: a failed accept (EMFILE, ENFILE, ENOBUFS…) backs off exponentially and is
//! logged at a bounded rate, so running out of descriptors never turns the accept loop
//! into a spin; a connection beyond the limit is handed back to be shed.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::{
    limits::Limits,
    metrics::{ListenerLabel, ListenerMetrics},
};

/// First and largest pause after a failed accept.
const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one accept-failure warning per this period (the rest are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What a listener and its connections share.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) limits: Limits,
    pub(crate) metrics: ListenerMetrics,
}

/// A TCP listener with its limits.
pub struct Listener {
    tcp: TcpListener,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    backoff: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

/// An accepted connection within the limit. Dropping it releases its slot.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub(crate) slot: Slot,
}

/// What `accept` hands back.
pub enum Accepted {
    Open(Conn),
    /// Beyond `maxConnections`: answer it 503 (see [`crate::shed`]) or drop it.
    Shed(TcpStream, SocketAddr),
}

/// A connection slot: the permit and the open-connections gauge.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared
            .metrics
            .open
            .get_or_create(&ListenerLabel {
                listener: self.shared.name,
            })
            .dec();
    }
}

impl Listener {
    /// `name` labels the metrics and logs (`proxy`, `admin`, `https`…).
    pub fn new(
        tcp: TcpListener,
        name: &'static str,
        limits: Limits,
        metrics: ListenerMetrics,
    ) -> Self {
        metrics.init(name);
        Self {
            tcp,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            shared: Arc::new(Shared {
                name,
                limits,
                metrics,
            }),
            backoff: BACKOFF_START,
            last_log: None,
            suppressed: 0,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The next connection. Never fails: errors are counted, logged at a bounded rate
    /// and followed by a growing pause (the listener keeps serving what it has).
    pub async fn accept(&mut self) -> Accepted {
        let label = ListenerLabel {
            listener: self.shared.name,
        };
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_START;
                    // Small request/response exchanges must not wait on Nagle.
                    let _ = stream.set_nodelay(true);
                    let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                        self.shared.metrics.shed.get_or_create(&label).inc();
                        return Accepted::Shed(stream, peer);
                    };
                    self.shared.metrics.open.get_or_create(&label).inc();
                    return Accepted::Open(Conn {
                        stream,
                        peer,
                        slot: Slot {
                            _permit: permit,
                            shared: self.shared.clone(),
                        },
                    });
                }
                Err(e) => {
                    self.shared
                        .metrics
                        .accept_errors
                        .get_or_create(&label)
                        .inc();
                    self.log_failure(&e);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn log_failure(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            listener = self.shared.name,
            error = %e,
            suppressed = self.suppressed,
            backoff = ?self.backoff,
            "accept failed (out of file descriptors?): backing off, still serving open connections"
        );
        self.last_log = Some(now);
        self.suppressed = 0;
    }
}
