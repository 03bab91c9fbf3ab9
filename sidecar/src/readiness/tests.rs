use std::{
    convert::Infallible,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

use http::{HeaderMap, Response};
use http_body_util::StreamBody;
use hyper::{body::Frame, service::service_fn};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpListener;

use super::*;

fn probe(json: &str) -> Result<UpstreamProbe, SidecarError> {
    UpstreamProbe::from_probe(&serde_json::from_str(json).expect("probe JSON"))
}

#[test]
fn probes_are_read_as_the_kubelet_reads_them() {
    let p = probe(r#"{"httpGet":{"path":"/v2/health/ready","port":8080,"httpHeaders":[{"name":"K-Kubelet-Probe","value":"queue"}]},"timeoutSeconds":3,"periodSeconds":10}"#).unwrap();
    assert_eq!(
        p.handler,
        Handler::Http {
            uri: "http://127.0.0.1:8080/v2/health/ready".parse().unwrap(),
            headers: vec![(
                HeaderName::from_static("k-kubelet-probe"),
                HeaderValue::from_static("queue")
            )],
        }
    );
    assert_eq!(p.timeout, Duration::from_secs(3));
    // Never slower than a second once ready: queue-proxy waits on our answer.
    assert_eq!(p.ready_period, READY_PERIOD_MAX);
    let p = probe(r#"{"tcpSocket":{"port":"8080","host":"::1"}}"#).unwrap();
    assert_eq!(
        p.handler,
        Handler::Tcp {
            address: "[::1]:8080".into()
        }
    );
    assert_eq!(p.timeout, DEFAULT_TIMEOUT);
    let p = probe(r#"{"grpc":{"port":9000}}"#).unwrap();
    assert!(matches!(p.handler, Handler::Grpc { ref service, .. } if service.is_empty()));

    for (json, field) in [
        (
            r#"{"httpGet":{"port":"http"}}"#,
            "upstreamProbe.httpGet.port",
        ),
        (
            r#"{"httpGet":{"port":8443,"scheme":"HTTPS"}}"#,
            "upstreamProbe.httpGet.scheme",
        ),
        (
            r#"{"tcpSocket":{"port":0}}"#,
            "upstreamProbe.tcpSocket.port",
        ),
        (r#"{"exec":{"command":["true"]}}"#, "upstreamProbe"),
        (r#"{"periodSeconds":1}"#, "upstreamProbe"),
    ] {
        let error = probe(json).unwrap_err().to_string();
        assert!(error.contains(field), "{json}: {error}");
    }
}

/// Serves HTTP/1.1 and h2c with `handler` until the test ends.
async fn serve<F, B>(handler: F) -> u16
where
    F: Fn(Request<hyper::body::Incoming>) -> Response<B> + Clone + Send + Sync + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn until(readiness: &Readiness, ready: bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let probed = readiness.last.lock().unwrap().is_some();
        let now = readiness.get();
        if probed && now.is_ok() == ready {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn http_readiness_follows_the_model_and_is_answered_from_the_last_result() {
    static LOADED: AtomicBool = AtomicBool::new(false);
    let port = serve(|req| {
        // Headers of the original probe are sent, as the kubelet would.
        assert_eq!(req.headers()["k-kubelet-probe"], "queue");
        assert!(req.headers()["user-agent"]
            .as_bytes()
            .starts_with(b"kube-probe/"));
        let status = if LOADED.load(Ordering::SeqCst) {
            204
        } else {
            503
        };
        Response::builder()
            .status(status)
            .body(Empty::<Bytes>::new())
            .unwrap()
    })
    .await;
    let p = probe(&format!(
        r#"{{"httpGet":{{"path":"/ready","port":{port},"httpHeaders":[{{"name":"K-Kubelet-Probe","value":"queue"}}]}}}}"#
    ))
    .unwrap();
    let readiness = Arc::new(Readiness::default());
    assert!(readiness.get().unwrap_err().contains("not been probed"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(p, readiness.clone(), stop.clone()));
    let why = until(&readiness, false).await.unwrap_err();
    assert!(why.contains("503"), "{why}");
    LOADED.store(true, Ordering::SeqCst);
    until(&readiness, true).await.unwrap();
    LOADED.store(false, Ordering::SeqCst);
    until(&readiness, false).await.unwrap_err();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn tcp_readiness_is_an_accepted_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let readiness = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let p = probe(&format!(r#"{{"tcpSocket":{{"port":{port}}}}}"#)).unwrap();
    tokio::spawn(run(p, readiness.clone(), stop.clone()));
    until(&readiness, true).await.unwrap();
    drop(listener);
    let why = until(&readiness, false).await.unwrap_err();
    assert!(why.contains(&port.to_string()), "{why}");
    stop.cancel();
}

/// A gRPC health server: answers `status` for the requested service, with the status
/// in trailers as gRPC servers do.
async fn grpc_health(status: &'static AtomicI32) -> u16 {
    serve(move |req| {
        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
        assert_eq!(req.headers()["content-type"], "application/grpc");
        let message = HealthCheckResponse {
            status: status.load(Ordering::SeqCst),
        }
        .encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from(frame))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures::stream::iter(frames)))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn grpc_readiness_is_a_serving_health_check() {
    static STATUS: AtomicI32 = AtomicI32::new(2);
    let port = grpc_health(&STATUS).await;
    let readiness = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let p = probe(&format!(
        r#"{{"grpc":{{"port":{port},"service":"inference"}}}}"#
    ))
    .unwrap();
    tokio::spawn(run(p, readiness.clone(), stop.clone()));
    let why = until(&readiness, false).await.unwrap_err();
    assert!(why.contains("not SERVING"), "{why}");
    STATUS.store(SERVING, Ordering::SeqCst);
    until(&readiness, true).await.unwrap();
    stop.cancel();
}
