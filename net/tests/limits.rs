//! The limits on real loopback sockets, with short timeouts: slow heads, idle and
//! silent connections are closed in their own time, connections and requests beyond
//! the bounds get 503 with Retry-After.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use guardrail_net::{
    overloaded, serve, Accepted, HoldPermit, InFlight, Limits, Listener, ListenerMetrics,
};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

struct Server {
    addr: std::net::SocketAddr,
    registry: Arc<Registry>,
    /// Requests to `/hold` wait for this.
    release: Arc<Notify>,
}

async fn start(limits: Limits) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let mut registry = Registry::with_prefix("guardrail");
    let metrics = ListenerMetrics::register(&mut registry);
    let in_flight = InFlight::new(limits.max_in_flight, "test", metrics.clone());
    let base = guardrail_net::builder(&limits);
    let mut listener = Listener::new(tcp, "test", limits, metrics);
    let release = Arc::new(Notify::new());
    let held = release.clone();
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            match listener.accept().await {
                Accepted::Open(conn) => {
                    let in_flight = in_flight.clone();
                    let held = held.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let permit = in_flight.try_enter();
                        let held = held.clone();
                        async move {
                            let Some(permit) = permit else {
                                let shed = overloaded::<Full<Bytes>>();
                                return Ok::<_, Infallible>(shed.map(|b| HoldPermit::new(b, None)));
                            };
                            if req.uri().path() == "/hold" {
                                held.notified().await;
                            }
                            let body = Full::new(Bytes::from_static(b"ok"));
                            Ok(Response::new(HoldPermit::new(body, Some(permit))))
                        }
                    });
                    let watcher = graceful.watcher();
                    let base = base.clone();
                    tokio::spawn(async move {
                        serve(conn, base, watcher, |s| async move { Some(s) }, service).await;
                    });
                }
                Accepted::Shed(stream, _) => {
                    tokio::spawn(guardrail_net::shed(stream));
                }
            }
        }
    });
    Server {
        addr,
        registry: Arc::new(registry),
        release,
    }
}

impl Server {
    fn metric(&self, line_start: &str) -> f64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("encode");
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn short() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    }
}

/// Reads one response head (up to its blank line) and returns it.
async fn response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    // The 2-byte body of our responses (or the 503's text) may follow: drain it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    String::from_utf8_lossy(&got).to_string()
}

/// Waits until the server closes `stream`; returns how long that took.
async fn closed(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after 10 s"),
        }
    }
}

#[tokio::test]
async fn a_slow_request_head_is_cut_at_the_header_timeout() {
    let server = start(short()).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed(&mut slow).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        server.metric("guardrail_listener_timeouts_total{listener=\"test\",phase=\"header\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let server = start(short()).await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let took = closed(&mut silent).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // One byte is not enough to choose HTTP/1 or HTTP/2 ("P" of both PRI and POST).
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    let took = closed(&mut stalled).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        server.metric("guardrail_listener_timeouts_total{listener=\"test\",phase=\"first_bytes\"}"),
        2.0
    );
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_header_timeout_then_closes_at_the_idle_timeout() {
    let server = start(short()).await;
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    conn.write_all(REQUEST).await.expect("write");
    assert!(response(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: still open, and it serves.
    tokio::time::sleep(Duration::from_millis(800)).await;
    conn.write_all(REQUEST).await.expect("write");
    assert!(response(&mut conn).await.starts_with("HTTP/1.1 200"));
    let took = closed(&mut conn).await;
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(4),
        "idle close after {took:?}"
    );
    assert_eq!(
        server.metric("guardrail_listener_timeouts_total{listener=\"test\",phase=\"idle\"}"),
        1.0
    );
}

#[tokio::test]
async fn after_an_idle_stretch_a_slow_head_still_gets_only_the_header_timeout() {
    let server = start(short()).await;
    let mut conn = TcpStream::connect(server.addr).await.expect("connect");
    conn.write_all(REQUEST).await.expect("write");
    assert!(response(&mut conn).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    let took = closed(&mut conn).await;
    assert!(
        took < Duration::from_millis(1000),
        "cut {took:?} after the first byte"
    );
    assert_eq!(
        server.metric("guardrail_listener_timeouts_total{listener=\"test\",phase=\"header\"}"),
        1.0
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_with_retry_after() {
    let server = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        c.write_all(REQUEST).await.expect("write");
        assert!(response(&mut c).await.starts_with("HTTP/1.1 200"));
        open.push(c);
    }
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    third.write_all(REQUEST).await.expect("write");
    let head = response(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    closed(&mut third).await;
    assert_eq!(
        server.metric("guardrail_listener_connections_shed_total{listener=\"test\"}"),
        1.0
    );
    assert_eq!(
        server.metric("guardrail_listener_connections{listener=\"test\"}"),
        2.0
    );
    // A slot freed is a slot served.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(server.addr).await.expect("connect");
    again.write_all(REQUEST).await.expect("write");
    assert!(response(&mut again).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_get_503_and_the_slot_returns() {
    let server = start(Limits {
        max_in_flight: 1,
        ..Limits::default()
    })
    .await;
    let mut holder = TcpStream::connect(server.addr).await.expect("connect");
    holder
        .write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = TcpStream::connect(server.addr).await.expect("connect");
    other.write_all(REQUEST).await.expect("write");
    let head = response(&mut other).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(
        server.metric("guardrail_listener_requests_shed_total{listener=\"test\"}"),
        1.0
    );
    server.release.notify_one();
    assert!(response(&mut holder).await.starts_with("HTTP/1.1 200"));
    let mut later = TcpStream::connect(server.addr).await.expect("connect");
    later.write_all(REQUEST).await.expect("write");
    assert!(response(&mut later).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let server = start(Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    })
    .await;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = c.write_all(big.as_bytes()).await;
    let head = response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}
