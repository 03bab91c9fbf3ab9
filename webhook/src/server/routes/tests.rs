use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::config::Config;

fn state(ready: bool) -> AppState {
    let engine = Arc::new(Engine::new(Config::default()).expect("engine"));
    let (_tx, rx) = watch::channel(engine);
    AppState {
        engine: rx,
        metrics: Metrics::default(),
        ready: Arc::new(AtomicBool::new(ready)),
        max_body_bytes: 1024,
        request_timeout: Duration::from_secs(8),
    }
}

async fn call(state: AppState, request: http::Request<Body>) -> (StatusCode, String) {
    let response = app(state)
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(body: Body) -> http::Request<Body> {
    http::Request::post("/validate")
        .body(body)
        .expect("request")
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_finishes_is_answered_503_after_the_timeout() {
    let state = state(true);
    let metrics = state.metrics.clone();
    let stalled = Body::from_stream(futures::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >());
    let (status, body) = call(state, post(stalled)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("not answered within"), "{body}");
    assert_eq!(
        metrics
            .rejected
            .get_or_create(&crate::metrics::ReasonLabels { reason: "timeout" })
            .get(),
        1
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_header_and_by_stream() {
    let declared = http::Request::post("/validate")
        .header(header::CONTENT_LENGTH, "4096")
        .body(Body::from(vec![b' '; 4096]))
        .expect("request");
    assert_eq!(
        call(state(true), declared).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // No content-length: the limit applies while streaming.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let (status, body) = call(state(true), post(Body::from_stream(chunks))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("1024"), "{body}");
}

#[tokio::test]
async fn readiness_follows_the_flag_and_health_is_always_ok() {
    let get = |path: &str| {
        http::Request::get(path)
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(
        call(state(false), get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(state(true), get("/readyz")).await.0, StatusCode::OK);
    assert_eq!(call(state(false), get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        call(state(true), get("/validate")).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}
