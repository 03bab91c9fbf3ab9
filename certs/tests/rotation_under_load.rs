//! Rotation the way kubelet does it (`..data` symlink swap) while AdmissionReview
//! requests stream in over fresh connections: no request fails, and new connections
//! get the new certificate shortly after the swap. An invalid new pair is rejected and
//! the previous one keeps serving.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{client_config, eventually, metrics_text, review, KubeletVolume};
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 8;
// Generous for a loaded 2-core CI machine; a swap is normally seen in ~150 ms.
const SWAP_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubelet_style_rotation_under_load_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca1, ca2, ca3) = (common::ca(30), common::ca(30), common::ca(30));
    let first = common::serving(&ca1);
    let mut volume = KubeletVolume::new(
        dir.path(),
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
    );
    let args = common::file_args(volume.path("tls.crt"), volume.path("tls.key"));
    let shutdown = CancellationToken::new();
    let (tls, registry) = common::start(&args, &shutdown).await.expect("start");
    let addr = common::serve(tls.server_config()).await;
    // The API server trusts every CA of the rotation (the caBundle holds old and new).
    let client = client_config(&[ca1.cert_pem(), ca2.cert_pem(), ca3.cert_pem()], None);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (stop, done, failures, client) =
            (stop.clone(), done.clone(), failures.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match review(addr, client.clone(), &format!("{worker}-{n}")).await {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().expect("failures").push(e),
                }
            }
        }));
    }
    let served_at_least = |count: usize| {
        let done = done.clone();
        move || {
            let done = done.clone();
            async move { (done.load(Ordering::Relaxed) >= count).then_some(()) }
        }
    };
    eventually(
        "traffic before the first swap",
        SWAP_TIMEOUT,
        served_at_least(50),
    )
    .await;

    let mut expected_serials = vec![common::serial_of(&volume.path("tls.crt"))];
    for (round, ca) in [&ca2, &ca3].into_iter().enumerate() {
        let next = common::serving(ca);
        let before = done.load(Ordering::Relaxed);
        let swapped = Instant::now();
        volume.publish(&[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)]);
        let serial = common::serial_of(&volume.path("tls.crt"));
        let client = client.clone();
        eventually(
            "new connections to get the new certificate",
            SWAP_TIMEOUT,
            || {
                let (client, serial) = (client.clone(), serial.clone());
                async move {
                    let seen = review(addr, client, "probe").await.ok()?;
                    (seen == serial).then_some(())
                }
            },
        )
        .await;
        eprintln!(
            "rotation {}: new serial served {:?} after the swap",
            round + 1,
            swapped.elapsed()
        );
        assert_eq!(tls.serving_certificate().serial, serial);
        expected_serials.push(serial);
        // Keep the load going across the swap, not just up to it.
        eventually(
            "traffic after the swap",
            SWAP_TIMEOUT,
            served_at_least(before + 50),
        )
        .await;
    }

    // A broken rotation (key of another certificate) is rejected; the last good pair
    // keeps serving.
    let good = expected_serials.last().cloned().expect("serial");
    let stray = common::serving(&ca1);
    let next = common::serving(&ca1);
    volume.publish(&[("tls.crt", &next.cert_pem), ("tls.key", &stray.key_pem)]);
    eventually("the rejected reload to be counted", SWAP_TIMEOUT, || {
        let text = metrics_text(&registry);
        async move {
            text.contains(
                "guardrail_webhook_certificate_reloads_total{certificate=\"serving\",result=\"error\"} 1",
            )
            .then_some(())
        }
    })
    .await;
    let seen = review(addr, client.clone(), "after-bad-swap")
        .await
        .expect("still served");
    assert_eq!(seen, good, "the invalid pair must not be served");

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    shutdown.cancel();
    let failures = failures.lock().expect("failures");
    let total = done.load(Ordering::Relaxed);
    eprintln!(
        "{total} AdmissionReviews over new connections, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(5)]
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            "guardrail_webhook_certificate_reloads_total{certificate=\"serving\",result=\"success\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "guardrail_webhook_certificate_expiry_timestamp_seconds{certificate=\"serving\"}"
        ),
        "{text}"
    );
}
