//! Signatures through the real `guardrail-webhook` binary: `serve` with a `signatures:`
//! config answering AdmissionReviews, and `check`, against a real `docker-registry`
//! holding images signed in cosign's format.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use guardrail_e2e::{
    bins::bin,
    process::eventually,
    registry::{
        cosign::{sign_with_keys, KeySigner},
        write, RegistryOptions, TestRegistry,
    },
    webhook::{admission_review, probed_pod as pod, Webhook},
};
use serde_json::Value;

/// A config trusting `key` for `<host>/models/**`, with `rule_extra` in the rule.
fn config(dir: &Path, host: &str, key: &KeySigner, rule_extra: &str) -> PathBuf {
    let key_file = write(dir, "release.pub", &key.public_pem);
    let yaml = format!(
        "signatures:\n  registries: [{{host: \"{host}\", insecure: true}}]\n  rules:\n  \
         - name: models\n    images: [\"{host}/models/**\"]\n    keys: [{{file: \"{}\"}}]\n{rule_extra}",
        key_file.display()
    );
    write(dir, "guardrail.yaml", &yaml)
}

fn response(answer: &Value) -> &Value {
    &answer["response"]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(args: &[&str]) -> Output {
    Command::new(bin("guardrail-webhook"))
        .arg("check")
        .args(args)
        .output()
        .expect("run guardrail-webhook check")
}

/// The value of a sample line (`name{labels} value`) in Prometheus text, or 0.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn serve_allows_signed_and_denies_unsigned_images_with_the_reason() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let signed = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &signed, &[&key]).await;
    let unsigned = reg.push_image("models/llm", "v2").await;
    let cfg = config(reg.dir.path(), &reg.host, &key, "");
    let webhook = Webhook::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let client = webhook.client();

    let signed_image = format!("{}/models/llm:v1@{signed}", reg.host);
    let (status, answer) = webhook
        .validate(
            &client,
            &admission_review("uid-signed", "CREATE", &pod("ok", &signed_image)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(response(&answer)["uid"], "uid-signed");
    assert_eq!(response(&answer)["allowed"], true, "{answer}");

    let unsigned_image = format!("{}/models/llm@{unsigned}", reg.host);
    let (status, answer) = webhook
        .validate(
            &client,
            &admission_review("uid-unsigned", "CREATE", &pod("bad", &unsigned_image)),
        )
        .await;
    assert_eq!(status, 200);
    let r = response(&answer);
    assert_eq!(r["allowed"], false, "{answer}");
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("[signatures] container \"server\"")
            && message.contains("no cosign signature found")
            && message.contains("cosign sign"),
        "{message}"
    );

    // An image of another repository matches no rule: denied (noMatch defaults to deny).
    let other = format!("{}/tools/debug@{signed}", reg.host);
    let (_, answer) = webhook
        .validate(
            &client,
            &admission_review("uid-other", "CREATE", &pod("other", &other)),
        )
        .await;
    let message = response(&answer)["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("matches no signature rule"), "{answer}");

    // The signed digest again: answered from the cache, no new signature fetch.
    let sig_path = format!("/manifests/{}.sig", signed.replace(':', "-"));
    let fetched = reg.requests_for(&sig_path);
    let (_, answer) = webhook
        .validate(
            &client,
            &admission_review("uid-again", "CREATE", &pod("ok2", &signed_image)),
        )
        .await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    assert_eq!(
        reg.requests_for(&sig_path),
        fetched,
        "a cache hit must not reach the registry"
    );
    let metrics = webhook.metrics().await;
    assert!(
        sample(
            &metrics,
            "guardrail_signature_cache_lookups_total{result=\"hit\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "guardrail_policy_violations_total{policy=\"signatures\",mode=\"enforce\"}"
        ) >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn stopped_registry_denies_with_the_reason_or_warns_under_on_error_allow() {
    let mut reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    reg.stop();
    let host = reg.host.clone();
    let extra = format!(
        "  - name: lenient\n    images: [\"{host}/lenient/**\"]\n    keys: [{{file: \"{}\"}}]\n    onError: allow\n",
        reg.dir.path().join("release.pub").display()
    );
    let cfg = config(reg.dir.path(), &host, &key, &extra);
    let webhook = Webhook::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let client = webhook.client();

    let strict = pod("strict", &format!("{host}/models/llm@{digest}"));
    let (_, answer) = webhook
        .validate(&client, &admission_review("uid-down", "CREATE", &strict))
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false, "{answer}");
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not verify signature of")
            && message.contains(&format!("registry {host}")),
        "{message}"
    );

    let lenient = pod("lenient", &format!("{host}/lenient/llm@{digest}"));
    let (_, answer) = webhook
        .validate(
            &client,
            &admission_review("uid-lenient", "CREATE", &lenient),
        )
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true, "{answer}");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        warnings.len() == 1
            && warnings[0].contains("[signatures] container \"server\"")
            && warnings[0].contains("allowed because onError is allow"),
        "{answer}"
    );
    let metrics = webhook.metrics().await;
    assert_eq!(
        sample(&metrics, "guardrail_signature_on_error_allowed_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "guardrail_admission_requests_total{kind=\"pod\",operation=\"create\",decision=\"warn\"}"),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn reloaded_config_gets_a_new_verifier() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let unsigned = reg.push_image("models/llm", "v1").await;
    let dir = reg.dir.path();
    // Rolling out: audit first, so the unsigned image is allowed with a warning.
    let cfg = config(dir, &reg.host, &key, "");
    let enforce = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        format!("policies: {{signatures: {{mode: audit}}}}\n{enforce}"),
    )
    .expect("write config");
    let webhook = Webhook::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let client = webhook.client();
    let review = admission_review(
        "uid-reload",
        "CREATE",
        &pod("llm", &format!("{}/models/llm@{unsigned}", reg.host)),
    );
    let (_, answer) = webhook.validate(&client, &review).await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    let warning = response(&answer)["warnings"][0]
        .as_str()
        .unwrap_or_default();
    assert!(warning.contains("no cosign signature found"), "{answer}");

    // Replace the file the way a ConfigMap update does: write, then rename.
    let staged = dir.join("staged.yaml");
    std::fs::write(&staged, enforce).expect("write staged config");
    std::fs::rename(&staged, &cfg).expect("swap config");
    eventually(
        "enforced signatures after reload",
        Duration::from_secs(15),
        || async {
            let (_, answer) = webhook.validate(&client, &review).await;
            (response(&answer)["allowed"] == false).then_some(())
        },
    )
    .await;
    let metrics = webhook.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "guardrail_config_reloads_total{result=\"success\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn check_verifies_signatures_unless_skipped_and_uses_registry_auth() {
    let reg = TestRegistry::start(RegistryOptions {
        tls: None,
        basic_auth: Some(("ci", "s3cret")),
    });
    let key = KeySigner::new();
    let signed = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &signed, &[&key]).await;
    let unsigned = reg.push_image("models/llm", "v2").await;
    let dir = reg.dir.path();
    let cfg = config(dir, &reg.host, &key, "");
    let auth = write(
        dir,
        "dockerconfig.json",
        &format!(
            r#"{{"auths":{{"{}":{{"username":"ci","password":"s3cret"}}}}}}"#,
            reg.host
        ),
    );
    let good = write(
        dir,
        "good.json",
        &pod("good", &format!("{}/models/llm@{signed}", reg.host)).to_string(),
    );
    let bad = write(
        dir,
        "bad.json",
        &pod("bad", &format!("{}/models/llm@{unsigned}", reg.host)).to_string(),
    );
    let (cfg, auth, good, bad) = (
        cfg.to_str().expect("utf-8"),
        auth.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
        bad.to_str().expect("utf-8"),
    );

    let out = check(&["--config", cfg, "--registry-auth", auth, good]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let out = check(&[
        "--config",
        cfg,
        "--registry-auth",
        auth,
        "--output",
        "json",
        good,
        bad,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report[0]["allowed"], true, "{report}");
    assert_eq!(report[1]["allowed"], false, "{report}");
    assert_eq!(
        report[1]["violations"][0]["policy"], "signatures",
        "{report}"
    );
    let message = report[1]["violations"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("no cosign signature found"), "{report}");

    // Without credentials the registry refuses us: denied, with the registry's answer.
    let out = check(&["--config", cfg, good]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("could not verify signature of"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pass --registry-auth FILE"), "{stderr}");

    let out = check(&["--config", cfg, "--skip-signatures", good, bad]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("image signatures are NOT verified (--skip-signatures)"),
        "{stderr}"
    );

    let missing = check(&[
        "--config",
        cfg,
        "--registry-auth",
        "/nonexistent/auth.json",
        good,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("/nonexistent/auth.json"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn budget_above_the_request_timeout_is_refused_at_start_up() {
    let key = KeySigner::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = write(dir.path(), "release.pub", &key.public_pem);
    let yaml = format!(
        "signatures:\n  budget: 5s\n  rules:\n  - images: [\"127.0.0.1:1/models/**\"]\n    \
         keys: [{{file: \"{}\"}}]\n",
        key_file.display()
    );
    let cfg = write(dir.path(), "guardrail.yaml", &yaml);
    let certs = guardrail_e2e::webhook::TestCerts::new();
    let out = Command::new(bin("guardrail-webhook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--request-timeout", "4s", "--config"])
        .arg(&cfg)
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .output()
        .expect("run serve");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("signatures.budget") && stderr.contains("--request-timeout"),
        "{stderr}"
    );
}
