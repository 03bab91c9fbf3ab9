//! HTTP/1 connections to the one upstream: a stack of idle, kept-alive senders.
//!
//! hyper-util's pooled `Client` is general (pools keyed by scheme and authority, a
//! checkout racing a connect, a task spawned per response to hand the connection back):
//! about 9k instructions of each proxied request (callgrind), a sixth of the proxy's
//! cost. The sidecar talks to exactly one upstream, so a connection goes back onto the
//! stack the moment its response body has ended, and a request takes the most recently
//! used one (warm; the least used age out at the bottom).

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, Once, Weak},
    time::Duration,
};

use http::{uri::Authority, Request, Response};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

use super::RequestBody;
use crate::metrics::Metrics;

/// Idle connections beyond this many are closed, so a burst does not hold file
/// descriptors for the whole idle timeout.
const MAX_IDLE: usize = 1024;

/// Where the upstream is: an address, or a name resolved at each connect (so a changed
/// DNS answer is followed, as hyper-util's resolver does).
#[derive(Debug)]
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub(super) enum UpstreamError {
    #[error("cannot connect to the upstream {target}: {error}")]
    Connect {
        target: String,
        error: std::io::Error,
    },
    #[error("connecting to the upstream {target} took longer than {timeout:?}")]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("HTTP/1 exchange with the upstream failed: {0}")]
    Http1(#[source] hyper::Error),
    #[error("HTTP/2 exchange with the upstream failed: {0}")]
    Http2(#[source] hyper_util::client::legacy::Error),
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl Idle {
    /// Still open (the upstream has not closed it) and not idle too long.
    fn usable(&self, now: Instant, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && now < self.since + idle_timeout
    }
}

pub(super) struct Pool {
    target: Target,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<VecDeque<Idle>>,
    reaper: Once,
    metrics: Arc<Metrics>,
}

/// A connection carrying one exchange. `release` puts it back once the response body
/// has ended; dropping it instead (client gone, body cut) closes the connection, whose
/// stream position is unknown.
pub(super) struct Lease {
    sender: http1::SendRequest<RequestBody>,
    pool: Arc<Pool>,
}

impl Lease {
    pub(super) fn release(self) {
        self.pool.put(self.sender, Instant::now());
    }
}

impl Pool {
    pub(super) fn new(
        authority: &Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let port = authority.port_u16().unwrap_or(80);
        // `[::1]` in an authority: the brackets are not part of the address.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let target = match host.parse::<IpAddr>() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
            Err(_) => Target::Name(host.to_string(), port),
        };
        Self {
            target,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            reaper: Once::new(),
            metrics,
        }
    }

    /// Sends `request` on an idle connection, or a new one. A request that a
    /// kept-alive connection never took (the upstream had closed it while idle) goes
    /// out on the next one, whatever its body: nothing of it was sent.
    pub(super) async fn send(
        self: &Arc<Self>,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut sender, reused) = match self.take(Instant::now()) {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            // A reused sender is ready once its connection has read the previous
            // response to its end; it fails if the connection has closed since.
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Http1(error));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        pool: self.clone(),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Http1(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection still open and not expired.
    fn take(&self, now: Instant) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(entry) = idle.pop_back() {
            if entry.usable(now, self.idle_timeout) {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<RequestBody>, now: Instant) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            return;
        }
        idle.push_back(Idle { sender, since: now });
    }

    /// Closes the idle connections that expired or were closed by the upstream.
    fn evict(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|entry| entry.usable(now, self.idle_timeout));
    }

    async fn connect(self: &Arc<Self>) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
        let connecting = async {
            match &self.target {
                Target::Addr(addr) => TcpStream::connect(addr).await,
                Target::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return Err(UpstreamError::Connect {
                    target: self.target_name(),
                    error,
                })
            }
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    target: self.target_name(),
                    timeout: self.connect_timeout,
                })
            }
        };
        // Small request heads must not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY on the upstream connection");
        }
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http1)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        self.metrics.upstream_connection_opened();
        self.start_reaper();
        Ok(sender)
    }

    /// Idle connections the upstream keeps open would otherwise stay open without
    /// traffic: a task (one per pool, holding it weakly) closes them when they expire.
    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let pool: Weak<Self> = Arc::downgrade(self);
            let every = (self.idle_timeout / 2).max(Duration::from_secs(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.evict(Instant::now());
                }
            });
        });
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::Addr(addr) => addr.to_string(),
            Target::Name(host, port) => format!("{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(authority: &str) -> Pool {
        Pool::new(
            &authority.parse().expect("authority"),
            Duration::from_secs(1),
            Duration::from_secs(90),
            Arc::new(Metrics::new("r1")),
        )
    }

    #[test]
    fn addresses_are_parsed_once_and_names_kept_for_resolution() {
        assert!(matches!(pool("127.0.0.1:8080").target, Target::Addr(a) if a.port() == 8080));
        assert!(matches!(pool("[::1]:9000").target, Target::Addr(a) if a.is_ipv6()));
        assert!(matches!(pool("model").target, Target::Name(ref h, 80) if h == "model"));
    }
}
