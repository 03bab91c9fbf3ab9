//! Fuzz targets: each takes arbitrary bytes and must neither panic nor hang. The same
//! functions run under libFuzzer (`cargo +nightly fuzz run <target>`, see
//! docs/fuzzing.md) and, on stable, over the committed corpus and every past crash
//! (`tests/replay.rs`), so the suite keeps them honest without a nightly build.
//!
//! A panic anywhere, including in a task the proxy spawned (tokio would otherwise
//! catch it), aborts the process: libFuzzer and the test runner both see a crash.

use std::{
    net::SocketAddr,
    sync::{Once, OnceLock},
    time::Duration,
};

use futures::StreamExt as _;
use guardrail_sidecar::{
    config::{Config as SidecarConfig, Protocol, RuleConfig, RuleConstraint, SanityConfig},
    sanity::{Checker, Kind},
};
use guardrail_webhook::{
    admission,
    engine::{Engine, EngineOptions},
    image::ImageRef,
    Config as WebhookConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    runtime::Runtime,
};

/// Makes any panic fatal (see module docs). Idempotent.
pub fn abort_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libFuzzer's C main skips the Rust runtime's start-up, which ignores SIGPIPE
        // (as the real binaries do): without this a write to a socket the sidecar has
        // closed kills the fuzzer instead of returning EPIPE.
        // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::abort();
        }));
    });
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// An AdmissionReview body through the whole `decide` path (default policies, no
/// network: the default config has no signature rules).
pub fn admission(data: &[u8]) {
    abort_on_panic();
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        Engine::build(WebhookConfig::default(), &EngineOptions::unregistered())
            .expect("the default config builds")
    });
    let decided = runtime().block_on(admission::decide(engine, data));
    if let Ok(decision) = decided {
        // Whatever was decided must serialise as the answer the API server reads.
        serde_json::to_vec(&decision.review).expect("an AdmissionReview answer serialises");
    }
}

/// Image reference parsing and normalisation: normalising is idempotent.
pub fn image_reference(data: &[u8]) {
    abort_on_panic();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(image) = ImageRef::parse(text) else {
        return;
    };
    let normalised = image.normalised();
    let again = ImageRef::parse(&normalised)
        .unwrap_or_else(|e| panic!("{text:?} normalised to {normalised:?}, which fails: {e}"));
    assert_eq!(again.normalised(), normalised, "normalising {text:?} twice");
    assert_eq!(again.digest(), image.digest(), "{text:?}");
}

/// Every sanity parser (KServe V1, OIP v2, OpenAI JSON and SSE, custom rules, scores)
/// on arbitrary bytes. The first byte picks the protocol and the instance count.
pub fn sanity(data: &[u8]) {
    abort_on_panic();
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    let checker = CHECKER.get_or_init(|| {
        let rule = |name: &str, pointer: &str, constraint| RuleConfig {
            name: name.into(),
            pointer: pointer.into(),
            constraint,
        };
        let config = SanityConfig {
            protocol: Protocol::Auto,
            probabilities: true,
            expected_outputs: vec!["output-0".into()],
            rules: vec![
                rule(
                    "label",
                    "/predictions/0",
                    RuleConstraint::Enum(vec!["cat".into(), "dog".into()]),
                ),
                rule("id", "/id", RuleConstraint::Regex("^req-[0-9]+$".into())),
                rule("text", "/choices/0/text", RuleConstraint::NonEmpty(true)),
            ],
            ..SanityConfig::default()
        };
        Checker::new(&config).expect("the fuzz sanity config is valid")
    });
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = match selector % 4 {
        0 => Kind::KserveV1,
        1 => Kind::OipV2,
        2 => Kind::OpenAi,
        _ => Kind::Generic,
    };
    let instances = (selector & 0x80 != 0).then_some(usize::from(selector >> 4 & 0x7));
    let findings = checker.check(kind, instances, body);
    assert!(
        findings.scores.iter().all(|s| s.is_finite()),
        "{findings:?}"
    );
}

/// Both binaries' config parsers: the first byte picks which. A config that loads
/// validates (loading is where validation happens).
pub fn configs(data: &[u8]) {
    abort_on_panic();
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(config) = SidecarConfig::from_yaml(text) {
            config.validate().expect("a loaded sidecar config is valid");
        }
    } else {
        let _ = WebhookConfig::parse(text);
    }
}

/// A running sidecar (proxy listener) in front of a model that answers every request.
struct Proxy {
    addr: SocketAddr,
}

fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        runtime().block_on(async {
            let model = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the model");
            let model_addr = model.local_addr().expect("model address");
            tokio::spawn(serve_model(model));
            let config = SidecarConfig {
                listen: "127.0.0.1:0".parse().expect("address"),
                admin_listen: "127.0.0.1:0".parse().expect("address"),
                upstream: format!("http://{model_addr}"),
                ..SidecarConfig::default()
            };
            let sidecar = guardrail_sidecar::app::Sidecar::new(config, Default::default())
                .expect("the sidecar builds");
            let (listener, admin) = sidecar.bind().await.expect("bind the sidecar");
            let addr = listener.local_addr().expect("proxy address");
            tokio::spawn(sidecar.serve(listener, admin, std::future::pending()));
            Proxy { addr }
        })
    })
}

/// The model echoes the request body back as its response, in chunks of 1 to 7 bytes
/// chosen by the bytes themselves: the sidecar's tee and sanity checks (KServe V1 on
/// `/v1/models/…:predict`, OIP v2, OpenAI, SSE by path) see arbitrary bytes at
/// arbitrary chunk boundaries.
async fn serve_model(listener: tokio::net::TcpListener) {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::{body::Frame, service::service_fn, Response};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let mut chunks = Vec::new();
                let mut at = 0;
                while at < body.len() {
                    let size = usize::from(body[at] % 7) + 1;
                    let end = (at + size).min(body.len());
                    chunks.push(Ok::<_, std::convert::Infallible>(Frame::data(
                        body.slice(at..end),
                    )));
                    at = end;
                }
                let stream = StreamBody::new(futures_util_stream(chunks));
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(stream)
                        .expect("response"),
                )
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

/// The chunks as a stream that yields between them, so each is its own frame.
fn futures_util_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::iter(items).then(|item| async move {
        tokio::task::yield_now().await;
        item
    })
}

/// Arbitrary bytes on a connection to the proxy: whatever it answers, it answers
/// within the time allowed and stays up (a later well-formed request is served).
pub fn proxy_http1(data: &[u8]) {
    abort_on_panic();
    let proxy = proxy();
    runtime().block_on(async {
        let mut conn = TcpStream::connect(proxy.addr).await.expect("connect");
        let _ = conn.write_all(data).await;
        let _ = conn.shutdown().await;
        let mut sink = Vec::new();
        // The sidecar closes after EOF; a request it is still proxying ends within the
        // upstream's answer. Bound it anyway: a hang is a finding.
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut sink));
        assert!(read.await.is_ok(), "the proxy did not finish within 5 s");
    });
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Every 256th input, prove the proxy still serves.
    if CHECKS
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(256)
    {
        still_serves(proxy);
    }
}

fn still_serves(proxy: &Proxy) {
    runtime().block_on(async {
        let mut conn = TcpStream::connect(proxy.addr).await.expect("connect");
        conn.write_all(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .await
            .expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    });
}

/// A fuzz target.
pub type Target = fn(&[u8]);

/// The targets by name, for the replay tests.
pub const TARGETS: [(&str, Target); 5] = [
    ("admission", admission),
    ("image_reference", image_reference),
    ("sanity", sanity),
    ("configs", configs),
    ("proxy_http1", proxy_http1),
];
