//! Events as `kube::runtime::events::Recorder` writes them (create, then series
//! patches, validated like the API server), and the standalone `kube-emulator` binary
//! (seed files, kubeconfig out, SIGTERM).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube_emulator::{Emulator, Options};
use serde_json::json;

#[tokio::test]
async fn recorder_events_are_created_then_patched_as_a_series() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = Emulator::start(Options::default())
        .await
        .expect("emulator starts");
    let recorder = Recorder::new(
        emu.client(),
        Reporter {
            controller: "guardrail-sidecar".into(),
            instance: Some("pod-1".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("serving.knative.dev/v1".into()),
        kind: Some("Revision".into()),
        name: Some("m-00002".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "ErrorRateBreached".into(),
        note: Some("error rate 12% > 5% over 60s".into()),
        action: "Rollback".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &reference)
        .await
        .expect("first event is created");
    recorder
        .publish(&event, &reference)
        .await
        .expect("repeat is patched");

    let events = emu
        .list("events.events.k8s.io", "default")
        .expect("list events");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["series"]["count"], json!(2));
    assert_eq!(events[0]["regarding"]["name"], json!("m-00002"));
    let verbs: Vec<String> = emu
        .audit()
        .iter()
        .map(|e| format!("{} {}", e.verb, e.code))
        .collect();
    assert_eq!(verbs, ["create 201", "patch 200"]);

    // The API server rejects events without the required fields.
    let api: Api<K8sEvent> = Api::namespaced(emu.client(), "default");
    let mut bad = K8sEvent::default();
    bad.metadata.name = Some("bad".into());
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid event");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("reportingController")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_seeds_writes_a_kubeconfig_and_stops_on_sigterm() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seeded, namespace: demo}\ndata: {k: v}\n")
        .expect("seed file");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .arg("--seed")
        .arg(&seed)
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    wait_for_file(&kubeconfig).await;

    let parsed = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .expect("config");
    let api: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), "demo");
    let seeded = api.get("seeded").await.expect("seeded object served");
    assert_eq!(seeded.data.expect("data")["k"], "v");

    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// Polls for a file the child writes once it serves (no fixed sleeps).
async fn wait_for_file(path: &Path) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was not written within 20s", path.display());
}
