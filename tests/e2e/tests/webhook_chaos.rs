//! The webhook under load while its registry slows down, goes away, and its config is
//! rewritten: every review gets an answer within `--request-timeout`, none is lost.
//! The registry is the real `docker-registry`, reached through a TCP relay the test
//! slows down (each request waits before it is forwarded) or cuts.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use guardrail_e2e::{
    registry::{
        cosign::{sign_with_keys, KeySigner},
        write, RegistryOptions, TestRegistry,
    },
    webhook::{admission_review, probed_pod as pod, Webhook},
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A relay in front of the registry: `delay_ms` before each chunk the client sends is
/// forwarded; while `down`, connections are dropped (open ones too).
struct Relay {
    host: String,
    delay_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (delay, gone) = (delay_ms.clone(), down.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if gone.load(Ordering::Relaxed) {
                    continue;
                }
                let (delay, gone) = (delay.clone(), gone.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let no_delay = Arc::new(AtomicU64::new(0));
                    let up = pump(cr, sw, delay, gone.clone());
                    let back = pump(sr, cw, no_delay, gone);
                    // Either direction ending (or the relay going down) ends both.
                    tokio::select! { () = up => {}, () = back => {} }
                });
            }
        });
        Relay {
            host,
            delay_ms,
            down,
        }
    }
}

/// Copies `from` to `to`, waiting `delay_ms` before forwarding each chunk, until
/// either side closes or the relay goes `down`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let d = delay_ms.load(Ordering::Relaxed);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        if down.load(Ordering::Relaxed) || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn config(host: &str, key_file: &Path, budget: &str) -> String {
    format!(
        "signatures:\n  budget: {budget}\n  cache: {{positiveTtl: 1ms, negativeTtl: 1ms}}\n  \
         registries: [{{host: \"{host}\", insecure: true}}]\n  rules:\n  \
         - name: models\n    images: [\"{host}/models/**\"]\n    keys: [{{file: \"{}\"}}]\n",
        key_file.display()
    )
}

/// One answered review: allowed or not, the denial message, how long it took.
struct Answer {
    allowed: bool,
    message: String,
    took: Duration,
}

/// Sends `n` reviews, `every` apart, all in flight together; panics on any review that
/// gets no answer (transport error, non-200) rather than counting it.
async fn burst(webhook: &Webhook, image: &str, n: usize, every: Duration) -> Vec<Answer> {
    let client = webhook.client();
    let mut tasks = Vec::new();
    for i in 0..n {
        let review = admission_review(&format!("uid-{i}"), "CREATE", &pod(&format!("p{i}"), image));
        let client = client.clone();
        let url = webhook.url("/validate");
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = client
                .post(url)
                .json(&review)
                .send()
                .await
                .expect("an answer");
            assert_eq!(r.status(), 200);
            let answer: Value = r.json().await.expect("JSON");
            Answer {
                allowed: answer["response"]["allowed"] == json!(true),
                message: answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                took: start.elapsed(),
            }
        }));
        tokio::time::sleep(every).await;
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("every review is answered"));
    }
    answers
}

#[tokio::test]
async fn under_load_a_slow_gone_or_reconfigured_registry_never_loses_a_review() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let relay = Relay::start(reg.addr).await;
    let key_file = write(reg.dir.path(), "release.pub", &key.public_pem);
    let cfg = write(
        reg.dir.path(),
        "guardrail.yaml",
        &config(&relay.host, &key_file, "2s"),
    );
    let request_timeout = Duration::from_secs(4);
    let webhook = Webhook::start(&[
        "--config",
        cfg.to_str().expect("path"),
        "--request-timeout",
        "4s",
    ]);
    let image = format!("{}/models/llm@{digest}", relay.host);
    let within = request_timeout + Duration::from_millis(500);

    // Just under the budget: every registry request waits 100 ms (a verification makes
    // a handful), all are verified.
    relay.delay_ms.store(100, Ordering::Relaxed);
    let answers = burst(&webhook, &image, 20, Duration::from_millis(20)).await;
    assert!(
        answers.iter().all(|a| a.allowed),
        "{:?}",
        answers.iter().map(|a| &a.message).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|a| a.took < within));

    // Over the budget: denied with the budget as the reason, within the budget.
    relay.delay_ms.store(3000, Ordering::Relaxed);
    let answers = burst(&webhook, &image, 20, Duration::from_millis(20)).await;
    for a in &answers {
        assert!(!a.allowed);
        assert!(a.message.contains("signatures.budget"), "{}", a.message);
        assert!(a.took < Duration::from_secs(3), "{:?}", a.took);
    }

    // Gone mid-load: every review still answered, in time.
    relay.delay_ms.store(0, Ordering::Relaxed);
    let cut = {
        let down = relay.down.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            down.store(true, Ordering::Relaxed);
        })
    };
    let answers = burst(&webhook, &image, 30, Duration::from_millis(20)).await;
    cut.await.expect("cut");
    assert!(answers.iter().all(|a| a.took < within));
    let denied = answers.iter().filter(|a| !a.allowed).count();
    assert!(denied > 0, "the outage was seen");
    assert!(
        answers
            .iter()
            .filter(|a| !a.allowed)
            .all(|a| a.message.contains("could not verify signature")),
        "{:?}",
        answers.iter().map(|a| &a.message).collect::<Vec<_>>()
    );

    // Back, and the config rewritten (a new budget) mid-load: answered, none lost.
    relay.down.store(false, Ordering::Relaxed);
    let rewrite = {
        let (cfg, host, key_file) = (cfg.clone(), relay.host.clone(), key_file.clone());
        tokio::spawn(async move {
            for budget in ["3s", "2s", "3s"] {
                tokio::time::sleep(Duration::from_millis(150)).await;
                std::fs::write(&cfg, config(&host, &key_file, budget)).expect("rewrite");
            }
        })
    };
    let answers = burst(&webhook, &image, 30, Duration::from_millis(20)).await;
    rewrite.await.expect("rewrite");
    assert!(answers.iter().all(|a| a.took < within));
    assert!(
        answers.iter().all(|a| a.allowed),
        "{:?}",
        answers.iter().map(|a| &a.message).collect::<Vec<_>>()
    );
    let metrics = webhook.metrics().await;
    assert!(
        metrics.contains("guardrail_config_reloads_total{result=\"success\"}"),
        "{metrics}"
    );
}
