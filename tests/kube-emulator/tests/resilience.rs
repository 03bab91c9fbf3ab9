//! Watches (through `kube::runtime::watcher`), fault injection, the server going away
//! and coming back, the audit log, and the in-cluster file layout.

mod common;

use std::time::Duration;

use common::start;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube_emulator::Emulator;
use serde_json::json;

/// Upper bound for any single wait: a hang fails the test instead of blocking CI.
const WAIT: Duration = Duration::from_secs(20);

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some([("v".to_string(), value.to_string())].into());
    cm
}

/// Next watcher event that is not an error (the watcher retries errors with backoff).
async fn next_event<S>(stream: &mut S) -> Event<ConfigMap>
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("watch event within the bound")
        {
            Some(Ok(event)) => return event,
            Some(Err(_)) => continue,
            None => panic!("watch stream ended"),
        }
    }
}

fn name_and_value(event: &Event<ConfigMap>) -> Option<(String, String, &'static str)> {
    let (cm, what) = match event {
        Event::Apply(cm) | Event::InitApply(cm) => (cm, "apply"),
        Event::Delete(cm) => (cm, "delete"),
        _ => return None,
    };
    let value = cm
        .data
        .as_ref()
        .and_then(|d| d.get("v"))
        .cloned()
        .unwrap_or_default();
    Some((cm.metadata.name.clone().unwrap_or_default(), value, what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_changes_and_resumes_after_a_restart() {
    let emu = start().await;
    let api: Api<ConfigMap> = Api::namespaced(emu.client(), "default");
    api.create(&PostParams::default(), &configmap("before", "0"))
        .await
        .expect("create");
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initial = Vec::new();
    loop {
        match next_event(&mut stream).await {
            Event::InitDone => break,
            other => initial.extend(name_and_value(&other)),
        }
    }
    assert_eq!(initial, [("before".to_string(), "0".to_string(), "apply")]);

    api.create(&PostParams::default(), &configmap("a", "1"))
        .await
        .expect("create a");
    assert_eq!(
        name_and_value(&next_event(&mut stream).await),
        Some(("a".into(), "1".into(), "apply"))
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "v": "2" } })),
    )
    .await
    .expect("patch a");
    assert_eq!(
        name_and_value(&next_event(&mut stream).await),
        Some(("a".into(), "2".into(), "apply"))
    );
    api.delete("a", &Default::default())
        .await
        .expect("delete a");
    assert_eq!(
        name_and_value(&next_event(&mut stream).await),
        Some(("a".into(), "2".into(), "delete"))
    );

    // The server goes away mid-watch and comes back on the same port with its state.
    let port = emu.addr().port();
    emu.stop().await;
    assert!(
        api.get("before").await.is_err(),
        "requests fail while the server is down"
    );
    emu.restart().await.expect("restart");
    assert_eq!(emu.addr().port(), port);
    emu.put(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "after", "namespace": "default" }, "data": { "v": "3" } }))
        .expect("seed after restart");
    loop {
        if let Some((name, value, _)) = name_and_value(&next_event(&mut stream).await) {
            if name == "after" {
                assert_eq!(value, "3");
                break;
            }
        }
    }
    let watches = emu.audit().iter().filter(|e| e.verb == "watch").count();
    assert!(
        watches >= 2,
        "the watcher re-watched after the restart ({watches} watches)"
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_gone() {
    let emu = start().await;
    for i in 0..4200 {
        emu.put(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "churn", "namespace": "default" }, "data": { "i": i.to_string() } }))
            .expect("write");
    }
    let api: Api<ConfigMap> = Api::namespaced(emu.client(), "default");
    let mut events = api
        .watch(&WatchParams::default(), "2")
        .await
        .expect("watch starts")
        .boxed();
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event in time")
        .expect("an event")
        .expect("decodes");
    match first {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn injected_faults_surface_as_the_real_api_would_answer() {
    let emu = start().await;
    let api: Api<ConfigMap> = Api::namespaced(emu.client(), "default");
    api.create(&PostParams::default(), &configmap("c", "0"))
        .await
        .expect("create");
    let merge = |v: &str| Patch::Merge(json!({ "data": { "v": v } }));

    emu.faults().deny("patch", "configmaps");
    let err = api
        .patch("c", &PatchParams::default(), &merge("1"))
        .await
        .expect_err("denied");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403 && s.reason == "Forbidden" && s.message.contains("cannot patch resource \"configmaps\"")),
        "{err:?}"
    );
    api.get("c").await.expect("other verbs still allowed");
    emu.faults().allow("patch", "configmaps");

    emu.faults().conflicts(2);
    for _ in 0..2 {
        let err = api
            .patch("c", &PatchParams::default(), &merge("1"))
            .await
            .expect_err("409 storm");
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 409),
            "{err:?}"
        );
    }
    api.patch("c", &PatchParams::default(), &merge("1"))
        .await
        .expect("storm over");

    // kube retries 503 by default; the audit log shows what the server answered.
    emu.clear_audit();
    emu.faults().errors(503, 2);
    api.get("c").await.expect("kube retried through the 503s");
    let codes: Vec<u16> = emu.audit().iter().map(|e| e.code).collect();
    assert_eq!(codes, [503, 503, 200]);
    emu.faults().errors(500, 1);
    let err = api.get("c").await.expect_err("500 is not retried");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"),
        "{err:?}"
    );

    emu.faults().reset_connections(1);
    let err = api.get("c").await.expect_err("connection cut");
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a cut connection is a transport error, got {err:?}"
    );
    api.get("c").await.expect("next request works");

    // Added latency beyond the client's read timeout makes the request time out.
    let mut config = emu.kube_config();
    config.read_timeout = Some(Duration::from_millis(200));
    let impatient: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), "default");
    emu.faults().latency(Duration::from_secs(3));
    impatient.get("c").await.expect_err("read timeout");
    emu.faults().latency(Duration::ZERO);
    impatient.get("c").await.expect("latency removed");
}

#[tokio::test]
async fn audit_log_records_verbs_content_types_bodies_and_managers() {
    let emu = start().await;
    let api: Api<ConfigMap> = Api::namespaced(emu.client(), "default");
    api.create(&PostParams::default(), &configmap("c", "0"))
        .await
        .expect("create");
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "v": "1" } })),
    )
    .await
    .expect("merge");
    let applied = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "w": "2" } });
    api.patch(
        "c",
        &PatchParams::apply("guardrail"),
        &Patch::Apply(&applied),
    )
    .await
    .expect("apply");
    let bad = reqwest_free_unauthenticated_get(&emu).await;
    assert_eq!(bad, 401);

    let audit = emu.audit();
    let patches: Vec<_> = audit.iter().filter(|e| e.verb == "patch").collect();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(
        patches[0].body_json().expect("json body")["data"]["v"],
        json!("1")
    );
    assert_eq!(
        (
            patches[1].content_type.as_str(),
            patches[1].field_manager.as_str()
        ),
        ("application/apply-patch+yaml", "guardrail")
    );
    assert_eq!(patches[1].path, "/api/v1/namespaces/default/configmaps/c");
    assert!(patches.iter().all(|e| e.code == 200), "{patches:?}");
    assert_eq!(audit.iter().filter(|e| e.verb == "create").count(), 1);
    assert_eq!(audit.last().map(|e| e.code), Some(401));
}

/// A request without the bearer token, over verified TLS, with kube's own client stack.
async fn reqwest_free_unauthenticated_get(emu: &Emulator) -> u16 {
    let mut config = kube::Config::new(emu.url().parse().expect("url"));
    config.root_cert = Some(vec![emu.ca_der().to_vec()]);
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    match api.get("c").await {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected 401 Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn in_cluster_files_and_environment_work_with_kube() {
    let emu = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let in_cluster = emu
        .write_in_cluster(dir.path())
        .expect("write in-cluster files");
    let env: std::collections::HashMap<_, _> = in_cluster.env.iter().cloned().collect();
    // What kube's in-cluster config does, with the directory instead of the fixed path.
    let url = format!(
        "https://{}:{}",
        env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]
    );
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert_file = Some(in_cluster.dir.join("ca.crt"));
    config.auth_info.token_file = Some(in_cluster.dir.join("token").display().to_string());
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &configmap("from-pod", "1"))
        .await
        .expect("authenticated with the token file");
    assert_eq!(
        std::fs::read_to_string(in_cluster.dir.join("namespace")).expect("namespace file"),
        "default"
    );

    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).expect("write kubeconfig");
    let parsed = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .expect("config");
    let api: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), "default");
    assert!(api.get("from-pod").await.is_ok());
}
