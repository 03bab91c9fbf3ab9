//! Hostile and broken peers against the real sidecar binary: slow request heads are
//! cut on both listeners, and running out of file descriptors neither spins the
//! accept loop nor stops the connections already open.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use bytes::Bytes;
use guardrail_e2e::sidecar::{upstream, SidecarProcess};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn model() -> std::net::SocketAddr {
    upstream(|_req| async {
        Response::new(
            Full::new(Bytes::from_static(br#"{"predictions":[0.5]}"#))
                .map_err(|never| match never {})
                .boxed(),
        )
    })
    .await
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const PREDICT: &[u8] =
    b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}";

/// Sends one request on `conn` and reads until the response's JSON body arrived.
async fn predict(conn: &mut TcpStream) -> String {
    conn.write_all(PREDICT).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("predictions") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_string()
}

/// Resolves when the server closes `conn` (EOF or reset).
async fn closed_by_server(mut conn: TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_cut_on_both_listeners() {
    let up = model().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = SidecarProcess::start(
        &format!("http://{up}"),
        "m-00001",
        "limits:\n  headerReadTimeout: 1s\n",
        dir.path(),
    );
    let mut slow = Vec::new();
    for addr in std::iter::repeat_n(sidecar.proxy, 50).chain(std::iter::repeat_n(sidecar.admin, 10))
    {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\n")
            .await
            .expect("write");
        slow.push(c);
    }
    let start = Instant::now();
    let all = futures::future::join_all(slow.into_iter().map(closed_by_server));
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("every slow connection is closed");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    // Meanwhile and after, normal requests are served.
    let mut ok = TcpStream::connect(sidecar.proxy).await.expect("connect");
    assert!(predict(&mut ok).await.starts_with("HTTP/1.1 200"));
    let m = sidecar.metrics().await;
    let timeouts = |listener: &str| {
        metric(
            &m,
            "guardrail_listener_timeouts_total",
            &[&format!("listener=\"{listener}\""), "phase=\"header\""],
        )
    };
    assert_eq!((timeouts("proxy"), timeouts("admin")), (50.0, 10.0), "{m}");
}

/// utime + stime of `pid`, in seconds (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_open_connections_keep_working() {
    let up = model().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Accepted silent connections are closed after 2 s, so descriptors come back.
    let (sidecar, log) = SidecarProcess::start_logged(
        &format!("http://{up}"),
        "m-00001",
        "limits:\n  headerReadTimeout: 2s\n",
        dir.path(),
        &[],
    );
    let pid = sidecar.child.pid();
    // A kept-alive client connection (and the sidecar's upstream connection behind it).
    let mut kept = TcpStream::connect(sidecar.proxy).await.expect("connect");
    assert!(predict(&mut kept).await.starts_with("HTTP/1.1 200"));
    let status = Command::new("prlimit")
        .args([&format!("--pid={pid}"), "--nofile=64:64"])
        .status()
        .expect("prlimit runs");
    assert!(status.success());
    // 300 connections that say nothing: the kernel completes them, the sidecar runs
    // out of descriptors accepting them.
    let exhausted = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(sidecar.proxy).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = cpu_seconds(pid) - before;
    assert!(
        spent < 0.3,
        "{spent:.2} s of CPU in 3 s while out of descriptors"
    );
    // What it has, it keeps serving.
    assert!(predict(&mut kept).await.starts_with("HTTP/1.1 200"));
    drop(idle);
    // Descriptors free again: new connections are served (the backoff is at most 1 s).
    let mut fresh = None;
    for _ in 0..50 {
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(sidecar.proxy)).await
        {
            if tokio::time::timeout(Duration::from_secs(3), predict(&mut c))
                .await
                .is_ok()
            {
                fresh = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fresh.is_some(), "new connections are served again");
    let m = sidecar.metrics().await;
    let errors = metric(
        &m,
        "guardrail_listener_accept_errors_total",
        &["listener=\"proxy\""],
    );
    assert!(errors >= 1.0, "accept errors counted: {m}");
    let warnings = std::fs::read_to_string(&log)
        .expect("log")
        .matches("accept failed")
        .count();
    // One warning per 10 s at most.
    let periods = 1 + (exhausted.elapsed().as_secs() / 10) as usize;
    assert!(
        (1..=periods).contains(&warnings),
        "{warnings} accept warnings for {errors} failures in {:?}: logged at a bounded rate",
        exhausted.elapsed()
    );
    eprintln!(
        "out of descriptors: {spent:.3} s CPU in 3 s, {errors} failed accepts, {warnings} warnings, served again after {:?}",
        exhausted.elapsed()
    );
}
