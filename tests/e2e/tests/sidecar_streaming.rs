//! 100 MB request and response bodies stream through the real sidecar binary with
//! bounded memory, and a body larger than the sanity tee is counted as unchecked.

use bytes::Bytes;
use futures::StreamExt;
use guardrail_e2e::sidecar::{sample, upstream, SidecarProcess};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{body::Frame, Response};

const CHUNK_LEN: usize = 64 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'7'; CHUNK_LEN];
/// 100 MiB in 64 KiB chunks.
const CHUNKS: usize = 1600;
const TOTAL: u64 = (CHUNK_LEN * CHUNKS) as u64;

#[tokio::test]
async fn hundred_megabyte_bodies_stream_with_bounded_memory() {
    let up = upstream(|req| async move {
        if req.method() == hyper::Method::POST {
            // Sink: count what arrives, frame by frame.
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                n += frame
                    .expect("request frame")
                    .data_ref()
                    .map_or(0, |d| d.len() as u64);
            }
            Response::new(
                Full::new(Bytes::from(n.to_string()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
        } else {
            // Source: 100 MiB generated lazily, never held whole.
            let frames = futures::stream::iter(0..CHUNKS)
                .map(|_| Ok(Frame::data(Bytes::from_static(&CHUNK))));
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar = SidecarProcess::start(&format!("http://{up}"), "big-00001", "", dir.path());
    let client = reqwest::Client::new();
    // Warm up so the baseline includes the runtime's and the pool's steady state.
    client
        .get(sidecar.url("/healthz-upstream"))
        .send()
        .await
        .expect("warm-up")
        .bytes()
        .await
        .expect("body");
    let baseline_kb = sidecar.memory_kb("VmHWM");

    let upload = futures::stream::iter(0..CHUNKS)
        .map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK)));
    let r = client
        .post(sidecar.url("/v2/models/big/infer"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("count"), TOTAL.to_string());

    let mut r = client
        .get(sidecar.url("/v1/models/big:predict"))
        .send()
        .await
        .expect("download");
    let mut got: u64 = 0;
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        got += chunk.len() as u64;
    }
    assert_eq!(got, TOTAL);

    let peak_kb = sidecar.memory_kb("VmHWM");
    eprintln!("sidecar VmHWM: baseline {baseline_kb} kB, after 2 x 100 MiB {peak_kb} kB");
    assert!(
        peak_kb < baseline_kb + 16 * 1024,
        "memory grew from {baseline_kb} kB to {peak_kb} kB streaming 100 MiB: bodies are being buffered"
    );

    let m = sidecar.metrics().await;
    let rev = r#"revision="big-00001""#;
    assert_eq!(
        sample(&m, &format!("guardrail_request_body_bytes_total{{{rev}}}")),
        Some(TOTAL as f64)
    );
    // The download was a V1 path: larger than the 1 MiB tee, so counted as unchecked.
    assert_eq!(
        sample(&m, &format!("guardrail_sanity_unchecked_total{{{rev}}}")),
        Some(1.0)
    );
    let response_bytes =
        sample(&m, &format!("guardrail_response_body_bytes_total{{{rev}}}")).expect("bytes");
    assert!(response_bytes >= TOTAL as f64);
}
