//! Sidecar injection through the real binary: `guardrail-webhook inject` over the golden
//! inputs (every output a valid Pod for the Kubernetes schema, kubernetes-validate
//! --strict; the same `check` verdict before and after), and `/mutate` over TLS: the
//! base64 JSON Patch the API server would apply, applied by an RFC 6902 implementation,
//! gives the `inject` output; a second call answers no patch.

use std::{path::PathBuf, process::Command};

use base64::Engine as _;
use guardrail_e2e::{
    bins::bin,
    webhook::{admission_review, workspace_root, Webhook},
};
use serde_json::{json, Value};

const IMAGE: &str = "ghcr.io/guardrail-dev/guardrail-sidecar@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn inputs() -> PathBuf {
    workspace_root().join("webhook/tests/inject")
}

fn config(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, format!("injection:\n  image: {IMAGE}\n")).unwrap();
    path
}

/// `inject --all` on one file: (exit code, stdout documents, stderr).
fn inject(config: &std::path::Path, path: &std::path::Path) -> (i32, Vec<Value>, String) {
    let output = Command::new(bin("guardrail-webhook"))
        .arg("inject")
        .arg("--config")
        .arg(config)
        .arg("--all")
        .arg(path)
        .output()
        .expect("run inject");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let docs = serde_saphyr::from_multiple(&stdout).unwrap_or_default();
    (
        output.status.code().unwrap(),
        docs,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check(config: &std::path::Path, path: &std::path::Path) -> i32 {
    Command::new(bin("guardrail-webhook"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .arg(path)
        .output()
        .expect("run check")
        .status
        .code()
        .unwrap()
}

fn kubernetes_validate() -> PathBuf {
    std::env::var_os("GUARDRAIL_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/guardrail/chart-venv/bin/kubernetes-validate")
        })
}

#[test]
fn injected_pods_are_valid_kubernetes_and_keep_their_check_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut files: Vec<_> = std::fs::read_dir(inputs())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut outputs = Vec::new();
    let mut verdicts = Vec::new();
    for file in &files {
        let (code, docs, stderr) = inject(&config, file);
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        assert_eq!(docs.len(), 1, "{}", file.display());
        let out = dir.path().join(file.file_name().unwrap());
        // kubernetes-validate needs a name; at admission a ReplicaSet's pod has only
        // generateName (the name is assigned after the webhooks).
        let mut pod = docs[0].clone();
        if pod["metadata"].get("name").is_none() {
            pod["metadata"]["name"] = json!("named-for-validation");
        }
        std::fs::write(&out, serde_saphyr::to_string(&pod).unwrap()).unwrap();
        // Allowed stays allowed, denied stays denied, through the real CLI.
        verdicts.push((file.clone(), check(&config, file), check(&config, &out)));
        outputs.push(out);
    }
    for (file, before, after) in &verdicts {
        assert_eq!(
            before,
            after,
            "{}: check exit code changed by injection",
            file.display()
        );
    }
    // Both outcomes occur, so the comparison can fail either way.
    assert!(
        verdicts.iter().any(|v| v.1 == 0) && verdicts.iter().any(|v| v.1 == 1),
        "{verdicts:?}"
    );

    let output = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(&outputs)
        .output()
        .expect("run kubernetes-validate (tests/setup/chart.sh installs it)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn inject_refuses_bad_usage_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(bin("guardrail-webhook"))
            .arg("inject")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let pod = inputs().join("knative-http.yaml");
    let pod = pod.to_str().unwrap();
    let (code, stderr) = run(&[pod]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("injection.image") && stderr.contains("--image"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--image", "ghcr.io/x/sidecar:1.0", pod]);
    assert_eq!(code, 2);
    assert!(stderr.contains("digest"), "{stderr}");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: [").unwrap();
    let (code, _) = run(&["--image", IMAGE, broken.to_str().unwrap()]);
    assert_eq!(code, 2);
    // Without --all only labelled pods are injected; a Knative Service is left to its pods.
    let service = workspace_root().join("examples/good/knative-service.yaml");
    let output = Command::new(bin("guardrail-webhook"))
        .args(["inject", "--image", IMAGE])
        .arg(&service)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("left as is"), "{stderr}");
    let before: Vec<Value> = guardrail_e2e::webhook::manifest("examples/good/knative-service.yaml");
    let after: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn mutate_answers_the_patch_the_api_server_applies() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let webhook = Webhook::start(&["--config", config.to_str().unwrap()]);
    let client = webhook.client();
    let mutate = |review: Value| {
        let client = client.clone();
        let url = webhook.url("/mutate");
        async move {
            let response = client
                .post(url)
                .json(&review)
                .send()
                .await
                .expect("POST /mutate");
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("JSON")["response"].clone()
        }
    };
    let pod = guardrail_e2e::webhook::manifest("webhook/tests/inject/knative-http.yaml").remove(0);
    let answer = mutate(admission_review("uid-1", "CREATE", &pod)).await;
    assert_eq!(answer["uid"], "uid-1");
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["patch"].as_str().expect("patch is base64 text"))
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut mutated = pod.clone();
    json_patch::patch(&mut mutated, &patch).unwrap();
    // The same pod `inject` prints offline.
    let (_, offline, _) = inject(&config, &inputs().join("knative-http.yaml"));
    assert_eq!(mutated, offline[0]);

    // Reinvoked with our own output: allowed, no patch.
    let again = mutate(admission_review("uid-2", "CREATE", &mutated)).await;
    assert_eq!(again["allowed"], true);
    assert!(again.get("patch").is_none(), "{again}");

    // A conflict is admitted without injection, with a warning.
    let mut taken = pod.clone();
    taken["spec"]["hostNetwork"] = json!(true);
    let skipped = mutate(admission_review("uid-3", "CREATE", &taken)).await;
    assert_eq!(skipped["allowed"], true);
    assert!(skipped.get("patch").is_none());
    assert!(
        skipped["warnings"][0]
            .as_str()
            .unwrap()
            .contains("hostNetwork"),
        "{skipped}"
    );
    // Not a pod CREATE: nothing to do.
    let update = mutate(admission_review("uid-4", "UPDATE", &pod)).await;
    assert!(update.get("patch").is_none());

    let metrics = webhook.metrics().await;
    for (result, n) in [
        ("injected", 1),
        ("unchanged", 1),
        ("host_network", 1),
        ("skip", 1),
    ] {
        let line = format!("guardrail_injections_total{{result=\"{result}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}
