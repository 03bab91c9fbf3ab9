//! The TLS lifecycle through the real `guardrail-webhook` binary: `certs generate`,
//! serving with kubelet-style rotation under load, start-up refusals, and self-managed
//! mode against the Kubernetes API emulator.

mod certs_support;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use base64::Engine as _;
use certs_support::{
    client, generate, read, refusal, review, serial_of_pem, Volume, NAMESPACE, SERVICE,
    START_TIMEOUT,
};
use guardrail_certs::{Authority, Validity};
use guardrail_e2e::{process::eventually, webhook::Serve};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_certificates_serve_and_rotate_under_load() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second, mount) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("mount"),
    );
    generate(&first);
    generate(&second);
    std::fs::create_dir(&mount).expect("mount dir");
    let mut volume = Volume::new(&mount, &first);
    let server = Serve::start(&[
        "--tls-cert",
        &volume.path("tls.crt"),
        "--tls-key",
        &volume.path("tls.key"),
        "--service-name",
        SERVICE,
        "--service-namespace",
        NAMESPACE,
    ]);
    // The caBundle written by `certs generate`, decoded, is what the API server trusts;
    // during the rotation it holds both CAs.
    let bundle = |dir: &Path| {
        let b64 = read(&dir.join("caBundle"));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .expect("base64"),
        )
        .expect("PEM")
    };
    let config = client(&[bundle(&first), bundle(&second)]);
    let addr = server.addr;
    assert_eq!(
        review(addr, config.clone(), "first").await.expect("served"),
        serial_of_pem(&read(&first.join("tls.crt")))
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (stop, done, failures, config) =
                (stop.clone(), done.clone(), failures.clone(), config.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match review(addr, config.clone(), &format!("{w}-{n}")).await {
                        Ok(_) => drop(done.fetch_add(1, Ordering::Relaxed)),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                }
            })
        })
        .collect();
    let count = |at_least: usize| {
        let done = done.clone();
        move || {
            let done = done.clone();
            async move { (done.load(Ordering::Relaxed) >= at_least).then_some(()) }
        }
    };
    eventually("traffic before the swap", START_TIMEOUT, count(30)).await;
    let swapped = Instant::now();
    volume.publish(&second);
    let new_serial = serial_of_pem(&read(&second.join("tls.crt")));
    eventually(
        "new connections to see the new certificate",
        Duration::from_secs(15),
        || {
            let (config, new_serial) = (config.clone(), new_serial.clone());
            async move { (review(addr, config, "probe").await.ok()? == new_serial).then_some(()) }
        },
    )
    .await;
    eprintln!(
        "new serial served {:?} after the kubelet-style swap",
        swapped.elapsed()
    );
    let after = done.load(Ordering::Relaxed) + 30;
    eventually("traffic after the swap", START_TIMEOUT, count(after)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let failures = failures.lock().expect("lock").clone();
    eprintln!(
        "{} reviews over new connections, {} failed",
        done.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests during rotation: {:?}",
        &failures[..failures.len().min(5)]
    );

    let metrics = server.metrics().await;
    let expiry = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "guardrail_webhook_certificate_expiry_timestamp_seconds{certificate=\"serving\"}",
            )
        })
        .unwrap_or_else(|| panic!("no expiry metric in\n{metrics}"));
    let value: i64 = expiry
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("gauge value");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now + 29 * 86_400..=now + 31 * 86_400).contains(&value),
        "{expiry}"
    );
    assert!(
        metrics.contains("guardrail_webhook_certificate_reloads_total{certificate=\"serving\",result=\"success\"} 1"),
        "{metrics}"
    );
    drop(server.child);
}

#[test]
fn serve_refuses_bad_material_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |name: &str| dir.path().join(name).display().to_string();
    let names = guardrail_certs::service_dns_names(SERVICE, NAMESPACE);
    let ca = Authority::new("e2e CA", Validity::days_from_now(30)).expect("CA");
    let day = Duration::from_secs(86_400);
    let expired = ca
        .issue_serving(
            &names,
            Validity {
                not_before: SystemTime::now() - 10 * day,
                not_after: SystemTime::now() - day,
            },
        )
        .expect("expired");
    let good = ca
        .issue_serving(&names, Validity::days_from_now(10))
        .expect("good");
    let other = ca
        .issue_serving(
            &guardrail_certs::service_dns_names("other", NAMESPACE),
            Validity::days_from_now(10),
        )
        .expect("other names");
    let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).expect("write");
    write("expired.crt", &expired.cert_pem);
    write("expired.key", &expired.key_pem);
    write("good.crt", &good.cert_pem);
    write("good.key", &good.key_pem);
    write("other.crt", &other.cert_pem);
    write("other.key", &other.key_pem);
    let service = ["--service-name", SERVICE, "--service-namespace", NAMESPACE];
    let cases: [(&str, &str, &[&str]); 4] = [
        ("expired.crt", "expired.key", &["expired.crt", "expired at"]),
        ("other.crt", "other.key", &["other.crt", "do not cover"]),
        (
            "good.crt",
            "other.key",
            &["other.key", "does not match the certificate"],
        ),
        (
            "missing.crt",
            "good.key",
            &["missing.crt", "cannot read certificate"],
        ),
    ];
    for (cert, key, expected) in cases {
        let mut args = vec![
            "--tls-cert".to_string(),
            d(cert),
            "--tls-key".to_string(),
            d(key),
        ];
        args.extend(service.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = refusal(&args);
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{cert}/{key}: {needle:?} not in stderr:\n{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_replicas_share_one_secret_and_write_the_ca_bundle() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut options = kube_emulator::Options::default();
    options.namespaces.push(NAMESPACE.to_string());
    let emu = kube_emulator::Emulator::start(options)
        .await
        .expect("emulator");
    emu.put(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guardrail"},
        "webhooks": [{
            "name": "pods.guardrail.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": SERVICE, "namespace": NAMESPACE, "path": "/validate"}},
        }],
    }))
    .expect("seed configuration");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let args = [
        "--manage-webhook-configurations",
        "guardrail",
        "--service-name",
        SERVICE,
        "--service-namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "--tls-reload-interval",
        "1s",
    ];
    // Two replicas starting together.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Serve::start(&args));
        let b = s.spawn(|| Serve::start(&args));
        (a.join().expect("replica a"), b.join().expect("replica b"))
    });
    let creates = emu
        .audit()
        .into_iter()
        .filter(|e| e.verb == "create" && e.path.ends_with("/secrets") && e.code == 201)
        .count();
    assert_eq!(creates, 1, "the Secret must be created once");
    let config = emu
        .get("validatingwebhookconfigurations", "", "guardrail")
        .expect("configuration");
    let bundle_b64 = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .expect("caBundle set")
        .to_string();
    let bundle = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(bundle_b64)
            .expect("base64"),
    )
    .expect("PEM");
    let secret = emu
        .get("secrets", NAMESPACE, "guardrail-webhook-tls")
        .expect("Secret");
    let tls_crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().expect("tls.crt"))
        .expect("base64");
    let stored = serial_of_pem(&String::from_utf8(tls_crt).expect("PEM"));
    let config = client(&[bundle]);
    for server in [&a, &b] {
        let served = review(server.addr, config.clone(), "replica")
            .await
            .expect("served via caBundle");
        assert_eq!(
            served, stored,
            "every replica serves the Secret's certificate"
        );
    }
}
