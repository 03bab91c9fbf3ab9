//! Chaos on loopback, bounded in time and count, with every request accounted for: a
//! model killed and restarted under load, a model that never finishes its body or
//! breaks its chunked encoding, and SIGTERM under load.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{sample, sidecar};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};

/// A raw HTTP/1.1 model on a fixed port that the test can kill (every connection
/// dropped at once) and restart.
struct Model {
    addr: std::net::SocketAddr,
    kill: Arc<Notify>,
}

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n{\"predictions\":[0.5]}";

impl Model {
    async fn start(addr: std::net::SocketAddr) -> Model {
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                // The old socket's port may linger for a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let addr = listener.local_addr().expect("addr");
        let kill = Arc::new(Notify::new());
        let killed = kill.clone();
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    () = killed.notified() => break,
                    accepted = listener.accept() => {
                        let Ok((mut s, _)) = accepted else { continue };
                        conns.spawn(async move {
                            let mut buf = vec![0u8; 8192];
                            let mut got = Vec::new();
                            loop {
                                let Ok(n) = s.read(&mut buf).await else { return };
                                if n == 0 {
                                    return;
                                }
                                got.extend_from_slice(&buf[..n]);
                                // One small request per round trip: answer each head.
                                while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                                    let body = head
                                        .lines()
                                        .find_map(|l| l.strip_prefix("content-length:"))
                                        .and_then(|v| v.trim().parse::<usize>().ok())
                                        .unwrap_or(0);
                                    if got.len() < end + 4 + body {
                                        break;
                                    }
                                    got.drain(..end + 4 + body);
                                    if s.write_all(ANSWER).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        });
                    }
                }
            }
            // Killed: the listener and every connection go at once.
            conns.abort_all();
        });
        Model { addr, kill }
    }

    fn kill(&self) {
        self.kill.notify_one();
    }
}

#[tokio::test]
async fn a_model_killed_and_restarted_under_load_loses_no_request_from_the_books() {
    let model = Model::start("127.0.0.1:0".parse().expect("addr")).await;
    let addr = model.addr;
    let sc = sidecar(addr, "upstreamTimeout: 2s\nconnectTimeout: 500ms").await;
    let client = reqwest::Client::new();
    let url = sc.url("/v1/models/m:predict");
    let (ok, failed_status, failed_transport) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        let (ok, failed_status, failed_transport, stop, slowest) = (
            ok.clone(),
            failed_status.clone(),
            failed_transport.clone(),
            stop.clone(),
            slowest.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                let start = Instant::now();
                let r = client
                    .post(&url)
                    .body(r#"{"instances":[[1]]}"#)
                    .send()
                    .await;
                let outcome = match r {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(_) => &ok,
                        Err(_) => &failed_transport,
                    },
                    Ok(r) => {
                        let _ = r.bytes().await;
                        &failed_status
                    }
                    Err(_) => &failed_transport,
                };
                outcome.fetch_add(1, Ordering::Relaxed);
                slowest.fetch_max(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    model.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Model::start(addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for w in workers {
        sent += w.await.expect("worker");
    }
    let (ok, failed_status, failed_transport) = (
        ok.load(Ordering::Relaxed),
        failed_status.load(Ordering::Relaxed),
        failed_transport.load(Ordering::Relaxed),
    );
    assert_eq!(ok + failed_status + failed_transport, sent);
    assert!(failed_status > 0, "the outage was seen ({ok} ok)");
    assert!(
        ok > failed_status,
        "served before and after: {ok} ok, {failed_status} failed"
    );
    // No request hangs past the upstream timeout (2 s) plus the connect timeout.
    let slowest = slowest.load(Ordering::Relaxed);
    assert!(slowest < 3_000, "slowest request took {slowest} ms");
    // The books agree exactly: every request the client sent is one the sidecar
    // counted, every failure the client saw is an error it counted.
    let s = sc.wait_recorded(sent).await;
    assert_eq!(s.requests, sent);
    assert_eq!(s.errors, failed_status + failed_transport, "{s:?}");
    let m = sc.metrics().await;
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("guardrail_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, sent as f64);
    assert_eq!(
        sample(
            &m,
            r#"guardrail_request_errors_total{revision="model-00002"}"#
        ),
        Some((failed_status + failed_transport) as f64)
    );
    drop(restarted);
}

/// A model that sends `head` and `body` and then does `then` (nothing: hangs).
async fn raw_model(head_and_body: &'static [u8], hang: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(head_and_body).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_at_the_idle_timeout_and_counted() {
    let up = raw_model(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"predictions\":[",
        true,
    )
    .await;
    let sc = sidecar(up, "upstreamIdleTimeout: 500ms").await;
    let start = Instant::now();
    let r = reqwest::Client::new()
        .post(sc.url("/v1/models/m:predict"))
        .body("{}")
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(5), r.bytes())
        .await
        .expect("the cut body ends within the timeout");
    assert!(body.is_err(), "the client sees the body cut short");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let s = sc.wait_recorded(1).await;
    assert_eq!(s.errors, 1);
    let m = sc.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"guardrail_upstream_errors_total{revision="model-00002",kind="timeout"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn invalid_chunked_encoding_is_an_error_the_client_sees() {
    let up = raw_model(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"pre\r\nzz-not-hex\r\n",
        false,
    )
    .await;
    let sc = sidecar(up, "").await;
    let r = reqwest::Client::new()
        .post(sc.url("/v1/models/m:predict"))
        .body("{}")
        .send()
        .await;
    // Either the head already went out and the body is cut, or nothing did: an error.
    let client_saw_error = match r {
        Ok(r) => r.status() != 200 || r.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(client_saw_error);
    let s = sc.wait_recorded(1).await;
    assert_eq!(s.errors, 1, "{s:?}");
}

#[tokio::test]
async fn sigterm_under_load_turns_readiness_off_first_and_finishes_every_body() {
    // A model that streams a 64 KiB body slowly (8 chunks, 50 ms apart).
    let started = Arc::new(AtomicU64::new(0));
    let seen = started.clone();
    let up = common::upstream(move |_req| {
        seen.fetch_add(1, Ordering::Relaxed);
        async {
            let chunks = futures::stream::iter(0..8).then(|_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
                    b'x';
                    8192
                ])))
            });
            let body = http_body_util::StreamBody::new(chunks);
            hyper::Response::new(http_body_util::BodyExt::boxed(body))
        }
    })
    .await;
    let mut sc = sidecar(up, "drainTimeout: 10s").await;
    let url = sc.url("/stream");
    let client = reqwest::Client::new();
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), url.clone());
        in_flight.push(tokio::spawn(async move {
            let r = client.get(url).send().await?;
            r.bytes().await
        }));
    }
    // Every request has reached the model (its body is still streaming) before SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "requests did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let admin = sc.admin;
    let proxy = sc.proxy;
    sc.shutdown();
    // Readiness goes false before (or when) the proxy stops accepting.
    let mut ready_off_first = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let accepting = TcpStream::connect(proxy).await.is_ok();
        let ready = match reqwest::get(format!("http://{admin}/readyz")).await {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        };
        if !ready {
            ready_off_first = true;
        }
        if !accepting {
            break;
        }
        assert!(!ready_off_first || !ready, "readiness came back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        ready_off_first,
        "readiness turned false while the listener still accepted or at once"
    );
    for r in in_flight {
        let body = r
            .await
            .expect("task")
            .expect("an in-flight request finishes");
        assert_eq!(body.len(), 8 * 8192, "nothing cut mid-body");
    }
    tokio::time::timeout(Duration::from_secs(10), &mut sc.task)
        .await
        .expect("serve returns after the drain")
        .expect("serve task");
}

use futures::StreamExt as _;
