//! The real `guardrail-webhook serve` over real TLS: AdmissionReviews in, answers out.

use std::time::Duration;

use guardrail_e2e::{
    bins::bin,
    webhook::{admission_review, manifest, TestCerts, Webhook},
};
use serde_json::{json, Value};

fn response(answer: &Value) -> &Value {
    &answer["response"]
}

#[tokio::test]
async fn allows_good_and_denies_bad_workloads_with_every_violation() {
    let webhook = Webhook::start(&[]);
    let client = webhook.client();

    for file in [
        "examples/good/knative-service.yaml",
        "examples/good/inferenceservice-custom.yaml",
        "examples/good/deployment.yaml",
        "examples/good/cronjob.yaml",
        "webhook/tests/data/knative-revision-pod.yaml",
    ] {
        let object = &manifest(file)[0];
        let uid = format!("uid-{file}");
        let (status, answer) = webhook
            .validate(&client, &admission_review(&uid, "CREATE", object))
            .await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(response(&answer)["uid"], uid.as_str(), "{file}: uid echo");
        assert_eq!(response(&answer)["allowed"], true, "{file}: {answer}");
    }

    let bad = &manifest("examples/bad/deployment-unpinned.yaml")[0];
    let (status, answer) = webhook
        .validate(&client, &admission_review("bad-1", "CREATE", bad))
        .await;
    assert_eq!(status, 200, "a denial is an answer, not an HTTP error");
    let r = response(&answer);
    assert_eq!(r["uid"], "bad-1");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().expect("message");
    for expected in [
        "3 violations",
        "Deployment ml-serving/recommender",
        "[digest] container \"server\" (spec.template.spec.containers[0].image)",
        "(spec.template.spec.containers[0].readinessProbe)",
        "(spec.template.spec.containers[0].livenessProbe)",
        "fix:",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in {message}"
        );
    }
    // Resources is an audit policy by default: it comes back as a warning.
    let warnings = r["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().expect("text").contains("[resources]"));

    // DELETE passes untouched, even for a bad object.
    let (_, answer) = webhook
        .validate(&client, &admission_review("del", "DELETE", bad))
        .await;
    assert_eq!(response(&answer)["allowed"], true);

    // An object that cannot be read is denied with the reason.
    let unreadable = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "ml"},
                            "spec": {"containers": [{"name": "a", "image": 42}]}});
    let (_, answer) = webhook
        .validate(&client, &admission_review("u", "CREATE", &unreadable))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"]
        .as_str()
        .expect("message")
        .contains("spec.containers[0].image"));

    let metrics = webhook.metrics().await;
    for expected in [
        r#"guardrail_admission_requests_total{kind="deployment",operation="create",decision="deny"} 1"#,
        r#"guardrail_admission_requests_total{kind="pod",operation="create",decision="allow"} 1"#,
        r#"guardrail_admission_requests_total{kind="knative_service",operation="create",decision="allow"} 1"#,
        r#"guardrail_policy_violations_total{policy="digest",mode="enforce"} 1"#,
        r#"guardrail_policy_violations_total{policy="probes",mode="enforce"} 2"#,
        r#"guardrail_policy_violations_total{policy="resources",mode="audit"} 1"#,
        "guardrail_admission_decision_seconds_count 8",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn audit_mode_allows_and_returns_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guardrail.yaml");
    std::fs::write(&config, "mode: audit\n").expect("write config");
    let webhook = Webhook::start(&["--config", config.to_str().expect("utf-8 path")]);
    let bad = &manifest("examples/bad/knative-service-latest.yaml")[0];
    let (_, answer) = webhook
        .validate(
            &webhook.client(),
            &admission_review("audit-1", "CREATE", bad),
        )
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("[digest]") && w.contains("user-container")));
}

#[tokio::test]
async fn bad_bodies_get_400_and_413_with_json_errors() {
    let webhook = Webhook::start(&["--max-body-bytes", "65536"]);
    let client = webhook.client();
    let post = |body: Vec<u8>| {
        client
            .post(webhook.url("/validate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post(b"this is not json".to_vec()).await.expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("JSON error");
    assert!(body["error"].as_str().expect("error").contains("not JSON"));

    let r = post(br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec())
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("JSON error");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("AdmissionReview"));

    let mut big = admission_review(
        "big",
        "CREATE",
        &manifest("examples/good/deployment.yaml")[0],
    );
    big["request"]["object"]["metadata"]["annotations"] = json!({"padding": "x".repeat(70_000)});
    let r = post(serde_json::to_vec(&big).expect("bytes"))
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 413);
    let body: Value = r.json().await.expect("JSON error");
    assert!(body["error"].as_str().expect("error").contains("65536"));

    // The server is still answering.
    let good = admission_review(
        "after",
        "CREATE",
        &manifest("examples/good/deployment.yaml")[0],
    );
    let (status, answer) = webhook.validate(&client, &good).await;
    assert_eq!((status, &response(&answer)["allowed"]), (200, &json!(true)));

    let metrics = webhook.metrics().await;
    for reason in ["bad_json", "not_admission_review", "too_large"] {
        let line = format!("guardrail_admission_rejected_requests_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn http2_and_http1_keep_alive_and_health_endpoints() {
    let webhook = Webhook::start(&[]);
    let review = admission_review("h", "CREATE", &manifest("examples/good/deployment.yaml")[0]);

    let h2 = webhook.client();
    for _ in 0..3 {
        let r = h2
            .post(webhook.url("/validate"))
            .json(&review)
            .send()
            .await
            .expect("send");
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN must pick h2");
        assert_eq!(r.status().as_u16(), 200);
    }
    let h1 = webhook
        .client_builder()
        .http1_only()
        .build()
        .expect("client");
    for _ in 0..3 {
        let r = h1
            .post(webhook.url("/validate"))
            .json(&review)
            .send()
            .await
            .expect("send");
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.status().as_u16(), 200);
    }
    // Keep-alive: three requests per client, one TLS connection each.
    webhook
        .wait_for_log_count("connection accepted", 2, Duration::from_secs(10))
        .await;
    let accepted = webhook
        .log_lines()
        .iter()
        .filter(|l| l.contains("connection accepted"))
        .count();
    assert_eq!(accepted, 2, "clients must reuse their connections");

    for url in [webhook.url("/healthz"), webhook.url("/readyz")] {
        let r = h2.get(&url).send().await.expect("GET");
        assert_eq!(r.status().as_u16(), 200, "{url}");
    }
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(webhook.metrics_url(path)).await.expect("GET");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", webhook.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let mut webhook = Webhook::start(&[]);
    let client = webhook.client();
    let review = admission_review(
        "drain",
        "CREATE",
        &manifest("examples/good/deployment.yaml")[0],
    );
    let body = serde_json::to_vec(&review).expect("bytes");
    let (first, second) = body.split_at(body.len() / 2);

    // A request whose body arrives in two parts, with SIGTERM in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let request = client
        .post(webhook.url("/validate"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(request);
    tx.send(first.to_vec()).await.expect("first half");
    webhook
        .wait_for_log("reading request body", Duration::from_secs(10))
        .await;

    webhook.sigterm();
    webhook
        .wait_for_log("SIGTERM received", Duration::from_secs(10))
        .await;
    tx.send(second.to_vec()).await.expect("second half");
    drop(tx);

    let response = in_flight
        .await
        .expect("join")
        .expect("in-flight request answered");
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["response"]["uid"], "drain");
    assert_eq!(answer["response"]["allowed"], true);
    drop(client);

    let status = tokio::task::spawn_blocking(move || {
        let status = webhook.child.terminate(Duration::from_secs(15));
        (status, webhook)
    })
    .await
    .expect("join");
    let (status, webhook) = status;
    let status = status.expect("exits after SIGTERM");
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    webhook
        .wait_for_log("HTTPS connections drained", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn serves_certificates_made_by_certs_generate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tls");
    let status = std::process::Command::new(bin("guardrail-webhook"))
        .args([
            "certs",
            "generate",
            "--service",
            "guardrail-webhook",
            "--namespace",
            "guardrail",
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run certs generate");
    assert!(status.success());
    let certs = TestCerts {
        host: "guardrail-webhook.guardrail.svc".into(),
        ca_pem: std::fs::read_to_string(out.join("ca.crt")).expect("ca.crt"),
        cert: out.join("tls.crt"),
        key: out.join("tls.key"),
        dir,
    };
    let webhook = Webhook::start_with(certs, &[]);
    let review = admission_review("gen", "CREATE", &manifest("examples/good/cronjob.yaml")[0]);
    let (status, answer) = webhook.validate(&webhook.client(), &review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
}

#[tokio::test]
async fn a_pod_posing_as_knative_gets_no_queue_proxy_exemption() {
    let webhook = Webhook::start(&[]);
    let client = webhook.client();
    let pod = &manifest("webhook/tests/data/knative-revision-pod.yaml")[0];

    // Knative's Deployment for the same revision is allowed, like its pod.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sentiment-00001-deployment", "namespace": "ml-serving"},
        "spec": {"template": {"metadata": pod["metadata"].clone(), "spec": pod["spec"].clone()}}
    });
    let (_, answer) = webhook
        .validate(&client, &admission_review("kn-dep", "CREATE", &deployment))
        .await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");

    // Anyone can label a Pod as Knative's and call a container queue-proxy.
    let mut impostor = pod.clone();
    impostor["spec"]["containers"][1]["image"] = json!(format!(
        "docker.io/attacker/miner@sha256:{}",
        "ab".repeat(32)
    ));
    let (_, answer) = webhook
        .validate(&client, &admission_review("kn-fake", "CREATE", &impostor))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false, "{answer}");
    let message = r["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("container \"queue-proxy\""),
        "the impostor is judged: {message}"
    );
}

#[tokio::test]
async fn too_large_reviews_get_413_over_http2_as_over_http1() {
    // curl is what users try by hand (and 7.88 reports any reset during an upload as
    // a framing error); reqwest is a Rust h2 client like the API server's Go one.
    let webhook = Webhook::start(&["--max-body-bytes", "1048576"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &webhook.certs.ca_pem).expect("write CA");
    let body = dir.path().join("big.json");
    std::fs::write(&body, vec![b' '; 3 * 1024 * 1024]).expect("write body");
    let resolve = format!("{}:{}:127.0.0.1", webhook.certs.host, webhook.addr.port());
    let url = webhook.url("/validate");
    for version in ["--http2", "--http1.1"] {
        for chunked in [false, true] {
            let mut args = vec![
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                version,
                "--cacert",
                ca.to_str().expect("path"),
                "--resolve",
                &resolve,
                "-H",
                "content-type: application/json",
            ];
            if chunked {
                args.extend(["-H", "transfer-encoding: chunked"]);
            }
            let data = format!("@{}", body.display());
            args.extend(["--data-binary", &data, &url]);
            let out = tokio::process::Command::new("curl")
                .args(&args)
                .output()
                .await
                .expect("curl runs");
            let shown = String::from_utf8_lossy(&out.stdout).to_string();
            let expected = if version == "--http2" {
                "413 2"
            } else {
                "413 1.1"
            };
            assert_eq!(
                (out.status.code(), shown.as_str()),
                (Some(0), expected),
                "curl {version} chunked={chunked}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let client = webhook.client();
    let r = client
        .post(webhook.url("/validate"))
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (413, reqwest::Version::HTTP_2)
    );
    let body: Value = r.json().await.expect("JSON error");
    assert!(body["error"].as_str().expect("error").contains("1048576"));
}
