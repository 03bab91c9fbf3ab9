//! `guardrail-webhook check` through the real binary: verdicts, formats, exit codes.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use guardrail_e2e::{bins::bin, webhook::workspace_root};
use serde_json::Value;

fn check(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin("guardrail-webhook"))
        .arg("check")
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run guardrail-webhook check");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("check output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn examples_good_pass_and_bad_fail_with_exit_codes() {
    let good = check(&["examples/good"], None);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}{}",
        text(&good.stdout),
        text(&good.stderr)
    );
    assert!(text(&good.stdout).contains("6 object(s) checked: 6 allowed, 0 denied"));

    let all = check(&["examples/"], None);
    assert_eq!(all.status.code(), Some(1), "{}", text(&all.stderr));
    let out = text(&all.stdout);
    assert!(
        out.contains(
            "examples/bad/deployment-unpinned.yaml:3: Deployment ml-serving/recommender: DENIED"
        ),
        "{out}"
    );
    assert!(
        out.contains("examples/good/knative-service.yaml:4: Service ml-serving/sentiment: ALLOWED"),
        "{out}"
    );
    // The two sample configs (kind GuardrailConfig), the ValidatingWebhookConfiguration
    // and the ConfigMap are not workloads.
    assert!(out.contains("4 object(s) of other kinds ignored"), "{out}");
}

#[test]
fn json_output_lists_every_object_and_violation() {
    let out = check(
        &[
            "--output",
            "json",
            "examples/bad/pod-malformed-images.yaml",
            "examples/good/cronjob.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON array");
    let objects = report.as_array().expect("array");
    assert_eq!(objects.len(), 2);
    let pod = &objects[0];
    assert_eq!(
        (
            pod["kind"].as_str(),
            pod["namespace"].as_str(),
            pod["name"].as_str()
        ),
        (Some("Pod"), Some("ml-serving"), Some("debug-shell"))
    );
    assert_eq!(pod["allowed"], false);
    let containers: Vec<&str> = pod["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| {
            assert_eq!(v["policy"], "digest");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
            v["container"].as_str().expect("container")
        })
        .collect();
    assert_eq!(containers, ["uppercase", "short-digest", "volume weights"]);
    assert_eq!(objects[1]["allowed"], true);
    assert_eq!(objects[1]["violations"], Value::Array(vec![]));
}

#[test]
fn stdin_lists_and_config_files_are_read() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}]}"#;
    let out = check(&["-"], Some(list));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("<stdin>:1 (items[0]): Pod a: DENIED"),
        "{}",
        text(&out.stdout)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("audit.yaml");
    std::fs::write(&config, "mode: audit\n").expect("write config");
    let out = check(
        &["--config", config.to_str().expect("utf-8"), "-"],
        Some(list),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "audit mode allows: {}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("ALLOWED with 1 warning(s)"));
}

#[test]
fn parse_and_usage_errors_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n",
    )
    .expect("write");
    let out = check(&[broken.to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("broken.yaml") && err.contains('4'),
        "file and line expected: {err}"
    );

    let scalar = dir.path().join("scalar.yaml");
    std::fs::write(&scalar, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n---\njust a string\n").expect("write");
    let out = check(&[scalar.to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("scalar.yaml:6"),
        "{}",
        text(&out.stderr)
    );

    let out = check(&["does/not/exist.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does/not/exist.yaml"));

    let out = check(&[], None);
    assert_eq!(out.status.code(), Some(2), "missing PATH is a usage error");

    let bad_config = dir.path().join("bad-config.yaml");
    std::fs::write(&bad_config, "mode: enforce\nunknownKey: 1\n").expect("write");
    let out = check(
        &[
            "--config",
            bad_config.to_str().expect("utf-8"),
            "examples/good",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad-config.yaml") && err.contains("unknownKey"),
        "{err}"
    );
}
