//! The proxy against a Rust test upstream: what Python cannot do precisely (streams,
//! resets, h2c trailers, timeouts), headers, failures and graceful shutdown.

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use common::{sample, sidecar, upstream, UpBody};
use futures::{channel::mpsc, SinkExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{body::Frame, Response};
use tokio::sync::Notify;

fn full(status: u16, body: impl Into<Bytes>) -> Response<UpBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r
}

/// An upstream whose body sends `first`, then waits until the returned gate is
/// notified (the client has seen `first`) and sends `last`: a data frame, or a body
/// error that resets the stream mid-body.
async fn gated_stream(
    first: &'static [u8],
    last: Result<&'static [u8], &'static str>,
    content_type: Option<&'static str>,
) -> (SocketAddr, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let up = upstream(move |_req| {
        let gate = gate.clone();
        async move {
            let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(first)))).await;
                gate.notified().await;
                let last = last
                    .map(|data| Frame::data(Bytes::from_static(data)))
                    .map_err(std::io::Error::other);
                let _ = tx.send(last).await;
            });
            let mut r = Response::new(StreamBody::new(rx).boxed());
            if let Some(content_type) = content_type {
                r.headers_mut()
                    .insert("content-type", content_type.parse().expect("value"));
            }
            r
        }
    })
    .await;
    (up, release)
}

#[tokio::test]
async fn statuses_are_counted_by_class_and_errors_by_5xx() {
    let up = upstream(|req| async move {
        let status = req
            .uri()
            .path()
            .trim_start_matches("/status/")
            .parse()
            .unwrap_or(200);
        full(status, "x")
    })
    .await;
    let sc = sidecar(up, "").await;
    for status in [200, 200, 204, 404, 500, 503] {
        let r = reqwest::get(sc.url(&format!("/status/{status}")))
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), status);
    }
    let s = sc.wait_recorded(6).await;
    assert_eq!((s.requests, s.errors), (6, 2));
    let m = sc.metrics().await;
    let rev = r#"revision="model-00002""#;
    assert_eq!(
        sample(
            &m,
            &format!(r#"guardrail_requests_total{{{rev},class="2xx"}}"#)
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"guardrail_requests_total{{{rev},class="4xx"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"guardrail_requests_total{{{rev},class="5xx"}}"#)
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, &format!("guardrail_request_errors_total{{{rev}}}")),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, &format!("guardrail_window_requests{{{rev}}}")),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!("guardrail_request_duration_seconds_count{{{rev}}}")
        ),
        Some(6.0)
    );
}

#[tokio::test]
async fn headers_hop_by_hop_request_id_and_forwarded() {
    let up = upstream(|req| async move {
        let mut seen: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
        seen.sort();
        let id = req
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let mut r = full(
            200,
            serde_json::json!({ "headers": seen, "id": id }).to_string(),
        );
        r.headers_mut()
            .insert("connection", "x-upstream-private".parse().expect("value"));
        r.headers_mut()
            .insert("x-upstream-private", "1".parse().expect("value"));
        r
    })
    .await;
    let sc = sidecar(up, "").await;
    let client = reqwest::Client::new();
    let r = client
        .get(sc.url("/echo"))
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("x-forwarded-for", "10.1.2.3")
        .header("forwarded", "for=10.1.2.3")
        .header("x-request-id", "req-42")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "req-42");
    assert!(
        r.headers().get("x-upstream-private").is_none(),
        "response hop-by-hop kept"
    );
    let body: serde_json::Value = r.json().await.expect("json");
    let seen: Vec<&str> = body["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        !seen.contains(&"x-hop"),
        "hop-by-hop header reached upstream: {seen:?}"
    );
    assert!(
        seen.contains(&"x-forwarded-for") && seen.contains(&"forwarded"),
        "{seen:?}"
    );
    assert_eq!(body["id"], "req-42");

    // Without one, an id is generated, sent upstream and returned.
    let r = client.get(sc.url("/echo")).send().await.expect("request");
    let returned = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["id"], returned.as_str());
    assert_eq!(returned.len(), 36);
}

#[tokio::test]
async fn sse_first_event_arrives_before_the_stream_ends() {
    let (up, release) = gated_stream(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        // If the proxy buffered, the test would wait forever (and time out).
        Ok(b"data: [DONE]\n\n"),
        Some("text/event-stream"),
    )
    .await;
    let sc = sidecar(up, "").await;
    let mut r = reqwest::Client::new()
        .post(sc.url("/v1/chat/completions"))
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .expect("request");
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("first event must not wait for the end of the stream")
        .expect("chunk")
        .expect("some data");
    assert!(first.starts_with(b"data: "), "{first:?}");
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: [DONE]\n\n");
    let s = sc.wait_recorded(1).await;
    assert_eq!((s.sanity_checked, s.sanity_failures), (1, 0));
}

#[tokio::test]
async fn reset_mid_body_is_an_upstream_error() {
    // Crash only once the client has the headers: a true mid-body reset.
    let (up, crash) = gated_stream(b"{\"predictions\": [1,", Err("model crashed"), None).await;
    let sc = sidecar(up, "").await;
    let r = reqwest::Client::new()
        .post(sc.url("/v1/models/m:predict"))
        .body(r#"{"instances":[[1]]}"#)
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(r.status(), 200);
    crash.notify_one();
    assert!(
        r.bytes().await.is_err(),
        "the client must see the body cut short"
    );
    let s = sc.wait_recorded(1).await;
    assert_eq!((s.errors, s.sanity_checked, s.sanity_unchecked), (1, 0, 1));
    let m = sc.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"guardrail_upstream_errors_total{revision="model-00002",kind="reset"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn connect_refused_is_503_and_timeout_is_504() {
    // A port nobody listens on: bind, note, drop.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let sc = sidecar(closed, "").await;
    let r = reqwest::get(sc.url("/v1/models/m:predict"))
        .await
        .expect("response");
    assert_eq!(r.status(), 503);
    assert!(r.text().await.expect("body").contains("cannot connect"));

    let hang = Arc::new(Notify::new());
    let h = hang.clone();
    let up = upstream(move |_req| {
        let h = h.clone();
        async move {
            h.notified().await;
            full(200, "late")
        }
    })
    .await;
    let slow = sidecar(up, "upstreamTimeout: 200ms").await;
    let r = reqwest::get(slow.url("/x")).await.expect("response");
    assert_eq!(r.status(), 504);
    hang.notify_waiters();

    let m = sc.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"guardrail_upstream_errors_total{revision="model-00002",kind="connect"}"#
        ),
        Some(1.0)
    );
    let m = slow.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"guardrail_upstream_errors_total{revision="model-00002",kind="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(slow.wait_recorded(1).await.errors, 1);
}

#[tokio::test]
async fn h2c_grpc_trailers_pass_through_and_count_as_errors() {
    let up = upstream(|req| async move {
        assert_eq!(
            req.version(),
            hyper::Version::HTTP_2,
            "upstream must be spoken to in h2c"
        );
        let code = if req.uri().path().ends_with("/Fail") {
            "13"
        } else {
            "0"
        };
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", code.parse().expect("value"));
        let frames = futures::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ]);
        let mut r = Response::new(StreamBody::new(frames).boxed());
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().expect("value"));
        r
    })
    .await;
    let sc = sidecar(up, "").await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for (method, want) in [("Ok", "0"), ("Fail", "13")] {
        let req = hyper::Request::post(sc.url(&format!("/model.Predictor/{method}")))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .expect("request");
        let r = client.request(req).await.expect("h2c response");
        let collected = r.into_body().collect().await.expect("body");
        let trailers = collected.trailers().expect("trailers forwarded");
        assert_eq!(trailers["grpc-status"], want);
    }
    let s = sc.wait_recorded(2).await;
    assert_eq!((s.requests, s.errors), (2, 1));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (gate, seen) = (release.clone(), entered.clone());
    let up = upstream(move |_req| {
        let (gate, seen) = (gate.clone(), seen.clone());
        async move {
            seen.notify_one();
            gate.notified().await;
            full(200, "done")
        }
    })
    .await;
    let mut sc = sidecar(up, "drainTimeout: 30s").await;
    let url = sc.url("/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    entered.notified().await;
    sc.shutdown();
    // New connections are refused once the listener is closed.
    let proxy = sc.proxy;
    common_wait_refused(proxy).await;
    release.notify_one();
    let body = in_flight
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(body, "done");
    tokio::time::timeout(Duration::from_secs(10), &mut sc.task)
        .await
        .expect("serve returns after the drain")
        .expect("serve task");
}

async fn common_wait_refused(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still accepting after shutdown"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn admin_endpoints() {
    let up = upstream(|_req| async move { full(200, "{}") }).await;
    let sc = sidecar(up, "").await;
    let get = |p: &str| reqwest::get(format!("http://{}{p}", sc.admin));
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    assert_eq!(get("/nope").await.expect("404").status(), 404);
    reqwest::get(sc.url("/x")).await.expect("request");
    sc.wait_recorded(1).await;
    let g: serde_json::Value = get("/guardrails")
        .await
        .expect("guardrails")
        .json()
        .await
        .expect("json");
    assert_eq!(g["identity"]["revision"], "model-00002");
    assert_eq!(g["window"]["requests"], 1);
    assert_eq!(
        g["window"]["window_seconds"].as_f64().map(|s| s <= 60.0),
        Some(true)
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let down = sidecar(closed, "").await;
    let r = reqwest::get(format!("http://{}/readyz", down.admin))
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
}

/// Reads one HTTP/1.1 request head and its content-length body from `s`, and returns
/// its request line; `None` at EOF.
async fn read_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return head.lines().next().map(str::to_string);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_kept_alive_connection_closed_by_the_upstream_is_retried_once() {
    use tokio::io::AsyncWriteExt;
    // Like uvicorn after a 500: answer one request, then close the connection on the
    // next one without answering (and without having said `Connection: close`).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut s, &mut buf).await.is_some() {
                    let body = br#"{"predictions":[1]}"#;
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(&[head.as_bytes(), body].concat()).await;
                }
                read_request(&mut s, &mut buf).await;
            });
        }
    });
    let sc = sidecar(up, "").await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let r = client
            .post(sc.url("/v1/models/m:predict"))
            .body(r#"{"instances":[[1]]}"#)
            .send()
            .await
            .expect("response");
        assert_eq!(
            r.status(),
            200,
            "the replay on a fresh connection must succeed"
        );
    }
    let s = sc.wait_recorded(4).await;
    assert_eq!(s.errors, 0);
}

#[tokio::test]
async fn probes_pass_through_uncounted_and_readyz_runs_the_models_probe() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static LOADED: AtomicBool = AtomicBool::new(false);
    let up = upstream(|req| async move {
        if req.uri().path() == "/v2/health/ready" {
            let status = if LOADED.load(Ordering::SeqCst) {
                200
            } else {
                503
            };
            return full(status, "");
        }
        full(200, "{}")
    })
    .await;
    let probe = format!(
        "upstreamProbe: {{httpGet: {{path: /v2/health/ready, port: {}}}, periodSeconds: 1}}",
        up.port()
    );
    let sc = sidecar(up, &probe).await;
    let client = reqwest::Client::new();
    // queue-proxy's and the kubelet's probes reach the model but are not traffic.
    for (name, value) in [
        ("K-Kubelet-Probe", "queue"),
        ("User-Agent", "kube-probe/1.31"),
    ] {
        let r = client
            .get(sc.url("/v2/health/ready"))
            .header(name, value)
            .send()
            .await
            .expect("probe");
        assert_eq!(r.status(), 503);
    }
    client
        .get(sc.url("/predict"))
        .send()
        .await
        .expect("request");
    let s = sc.wait_recorded(1).await;
    let m = sc.metrics().await;
    let rev = r#"revision="model-00002""#;
    assert_eq!(
        (s.requests, s.errors),
        (1, 0),
        "probes are not in the window"
    );
    assert_eq!(
        sample(&m, &format!("guardrail_probe_requests_total{{{rev}}}")),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!("guardrail_request_duration_seconds_count{{{rev}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, &format!("guardrail_requests_in_flight{{{rev}}}")),
        Some(0.0)
    );

    // /readyz says what the model's own probe says, answered from the last result.
    let readyz = || async {
        let r = reqwest::get(format!("http://{}/readyz", sc.admin))
            .await
            .expect("readyz");
        r.status().as_u16()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while readyz().await != 503 {
        assert!(std::time::Instant::now() < deadline, "never not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    LOADED.store(true, Ordering::SeqCst);
    while readyz().await != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream speaking raw HTTP/1.1 keep-alive that counts the connections it accepts.
/// `/chunked` answers in chunks, `/big` with 4 MiB, any other path with itself.
async fn counting_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(line) = read_request(&mut s, &mut buf).await {
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    let answer = match path.as_str() {
                        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                            3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
                            .to_vec(),
                        "/big" => {
                            let body = vec![b'x'; 4 << 20];
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            [head.as_bytes(), &body].concat()
                        }
                        other => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{other}",
                            other.len()
                        )
                        .into_bytes(),
                    };
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_one_with_an_unread_body_never_is() {
    use std::sync::atomic::Ordering;
    let (up, accepted) = counting_upstream().await;
    let sc = sidecar(up, "").await;
    let client = reqwest::Client::new();
    // One after another, length-delimited and chunked: one connection carries them all.
    for i in 0..20 {
        let path = if i % 2 == 0 {
            "/chunked".to_string()
        } else {
            format!("/r{i}")
        };
        let r = client.get(sc.url(&path)).send().await.expect("response");
        assert_eq!(r.status(), 200);
        let want = if i % 2 == 0 {
            "abcdef".to_string()
        } else {
            path.clone()
        };
        assert_eq!(r.text().await.expect("body"), want);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "sequential requests share a connection"
    );

    // Eight at a time: at most eight connections, however many rounds.
    for round in 0..5 {
        let answers = futures::future::join_all((0..8).map(|i| {
            let client = client.clone();
            let url = sc.url(&format!("/c{round}-{i}"));
            async move { client.get(url).send().await?.text().await }
        }))
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.expect("answer"), format!("/c{round}-{i}"));
        }
    }
    let concurrent = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&concurrent),
        "{concurrent} connections for 8 at a time"
    );

    // A client that leaves in the middle of a 4 MiB body: that connection's stream is
    // mid-body, so it must not carry the next request (whose answer would be the rest of
    // the body).
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let r = fresh
        .get(sc.url("/big"))
        .send()
        .await
        .expect("head of the big body");
    assert_eq!(r.status(), 200);
    drop(r);
    sc.wait_recorded(20 + 40 + 1).await;
    for i in 0..8 {
        let path = format!("/after{i}");
        let r = client.get(sc.url(&path)).send().await.expect("response");
        assert_eq!(
            r.text().await.expect("body"),
            path,
            "an answer of its own, not the rest of /big"
        );
    }
    let metrics = sc.metrics().await;
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("guardrail_upstream_connections_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("guardrail_upstream_connections_total");
    assert_eq!(
        opened as usize,
        accepted.load(Ordering::SeqCst),
        "{metrics}"
    );
}
