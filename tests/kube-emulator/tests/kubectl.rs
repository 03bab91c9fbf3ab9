//! The real `kubectl` (a client no one here wrote) against the emulator: discovery,
//! get/apply/patch/replace, server-side apply, and the errors a real API server gives.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use kube_emulator::{Emulator, Options};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

struct Kubectl {
    emu: Emulator,
    dir: tempfile::TempDir,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("GUARDRAIL_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let found = std::process::Command::new(&path)
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(found.is_ok_and(|s| s.success()), "kubectl not found at {path:?}: run tests/run.sh (tests/setup/kube-emulator.sh installs it)");
    path
}

impl Kubectl {
    async fn start() -> Kubectl {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let emu = Emulator::start(Options::default())
            .await
            .expect("emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        emu.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig");
        Kubectl { emu, dir }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let dir: &Path = self.dir.path();
        let mut child = tokio::process::Command::new(kubectl_path())
            .args(args)
            .arg(format!("--cache-dir={}", dir.join("cache").display()))
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("HOME", dir)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl spawns");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.expect("write stdin");
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("kubectl finishes")
                .expect("kubectl output");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        assert_eq!(
            out.code, 0,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all, None).await).expect("kubectl printed JSON")
    }
}

const KSVC: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: m
spec:
  template:
    spec:
      containers:
      - image: registry.example/m@sha256:01
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_apply_and_patch_behave_as_against_a_real_server() {
    let k = Kubectl::start().await;
    let out = k.ok(&["apply", "-f", "-"], Some(KSVC)).await;
    assert!(
        out.contains("service.serving.knative.dev/m created"),
        "{out}"
    );
    let svc = k.json(&["get", "ksvc", "m"]).await;
    assert_eq!(svc["status"]["latestReadyRevisionName"], json!("m-00001"));
    // Server-side Table with the CRD's printer columns, as kubectl shows a real cluster.
    let table = k.ok(&["get", "revisions"], None).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header[..3], ["NAME", "CONFIG", "NAME"], "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("m-00001") && row.contains("True")),
        "{table}"
    );

    let split = r#"{"spec":{"traffic":[{"latestRevision":true,"percent":70},{"revisionName":"m-00001","percent":30,"tag":"prev"}]}}"#;
    k.ok(&["patch", "ksvc", "m", "--type=merge", "-p", split], None)
        .await;
    let json_patch = r#"[{"op":"replace","path":"/spec/traffic/0/percent","value":60},{"op":"replace","path":"/spec/traffic/1/percent","value":40}]"#;
    k.ok(
        &["patch", "ksvc", "m", "--type=json", "-p", json_patch],
        None,
    )
    .await;
    let stored = k.emu.get("ksvc", "default", "m").expect("stored");
    assert_eq!(
        (
            stored["spec"]["traffic"][0]["percent"].as_i64(),
            stored["spec"]["traffic"][1]["percent"].as_i64()
        ),
        (Some(60), Some(40))
    );
    assert_eq!(
        stored["status"]["traffic"][1]["url"],
        json!("http://prev-m.default.example.com")
    );

    // Re-applying the manifest (client-side apply) computes a patch from the last-applied annotation.
    let updated = KSVC.replace("sha256:01", "sha256:02");
    assert!(k
        .ok(&["apply", "-f", "-"], Some(&updated))
        .await
        .contains("configured"));
    assert!(k.emu.get("revisions", "default", "m-00002").is_some());

    // (`kubectl create secret` is not used: typed kubectl commands send protobuf.)
    for (name, tier) in [("a", "gpu"), ("b", "cpu")] {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{k: v}}\n"
        );
        k.ok(&["apply", "-f", "-"], Some(&secret)).await;
        k.ok(&["label", "secret", name, &format!("tier={tier}")], None)
            .await;
    }
    assert_eq!(
        k.ok(&["get", "secrets", "-l", "tier=gpu", "-o", "name"], None)
            .await
            .trim(),
        "secret/a"
    );

    let types: Vec<String> = k
        .emu
        .audit()
        .iter()
        .filter(|e| e.verb == "patch")
        .map(|e| e.content_type.clone())
        .collect();
    for wanted in [
        "application/merge-patch+json",
        "application/json-patch+json",
    ] {
        assert!(
            types.iter().any(|t| t == wanted),
            "{wanted} missing from {types:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_resource_version_gets_409_and_bad_traffic_gets_422() {
    let k = Kubectl::start().await;
    k.ok(&["apply", "-f", "-"], Some(KSVC)).await;
    let stale = k.ok(&["get", "ksvc", "m", "-o", "json"], None).await;
    k.ok(&["annotate", "ksvc", "m", "team=ml"], None).await;
    let out = k.run(&["replace", "-f", "-"], Some(&stale)).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Conflict") && out.stderr.contains("the object has been modified"),
        "{}",
        out.stderr
    );

    let bad = r#"{"spec":{"traffic":[{"latestRevision":true,"percent":60},{"revisionName":"m-00001","percent":30}]}}"#;
    let out = k
        .run(&["patch", "ksvc", "m", "--type=merge", "-p", bad], None)
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Traffic targets sum to 90, want 100"),
        "{}",
        out.stderr
    );
    let codes: Vec<u16> = k
        .emu
        .audit()
        .iter()
        .filter(|e| e.verb == "update" || e.verb == "patch")
        .map(|e| e.code)
        .collect();
    assert!(codes.contains(&409) && codes.contains(&422), "{codes:?}");

    let typo = KSVC.replace("spec:\n  template", "spec:\n  tempalte");
    let out = k.run(&["apply", "-f", "-"], Some(&typo)).await;
    assert_ne!(
        out.code, 0,
        "kubectl's default strict validation is enforced by the server"
    );
    assert!(
        out.stderr.contains("unknown field \"spec.tempalte\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force_conflicts() {
    let k = Kubectl::start().await;
    assert!(k
        .ok(&["apply", "--server-side", "-f", "-"], Some(KSVC))
        .await
        .contains("serverside-applied"));
    let other = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: m}\nspec:\n  template:\n    spec:\n      containers: [{image: registry.example/m@sha256:99}]\n";
    let out = k
        .run(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(other),
        )
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("conflict with \"kubectl\""),
        "{}",
        out.stderr
    );
    k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(other),
    )
    .await;
    let managers = k.json(&["get", "ksvc", "m", "--show-managed-fields"]).await["metadata"]
        ["managedFields"]
        .clone();
    let names: Vec<&str> = managers
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(names.contains(&"other"), "{names:?}");
}
