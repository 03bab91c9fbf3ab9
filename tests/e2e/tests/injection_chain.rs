//! Injection proven through the API server's own path: the chart's rendered
//! WebhookConfigurations in the Kubernetes API emulator (which calls the real webhook
//! over TLS, with the caBundle the webhook wrote itself), a Knative Service applied with
//! the real `kubectl`, and the Pod the emulator builds for its Revision (as Knative's
//! reconciler does) carrying the sidecar. Then that Pod runs **as its mutated spec
//! says**: the real `guardrail-sidecar` with the spec's args and env (downward API
//! resolved), the real KServe model server as the user container, and a client playing
//! queue-proxy from the spec's `USER_PORT` and `SERVING_READINESS_PROBE`.
//!
//! Remapped for a test machine (documented in docs/injection.md): container ports to
//! free loopback ports (8080 → a, 8090 → b, 9095 → c; the same map rewrites args, env
//! values and the probe JSON), the API token mount (a process cannot see the in-cluster
//! path: the spec is checked, and the sidecar reaches the emulator by `KUBECONFIG` as in
//! the other end-to-end tests), and the user container's image (the KServe server runs
//! in its place).

mod chart_support;

use std::{collections::BTreeMap, process::Command, time::Duration};

use chart_support::{render, start_rendered_at, write_config, NAMESPACE};
use guardrail_e2e::{
    bins::bin,
    kserve::{ModelServer, MODEL},
    process::{eventually, free_port, ChildGuard},
};
use serde_json::{json, Value};

const SERVICE: &str = "sentiment";
const MODELS: &str = "ml-serving";

fn kubectl() -> std::path::PathBuf {
    std::env::var_os("GUARDRAIL_KUBECTL")
        .map(Into::into)
        .unwrap_or_else(|| "kubectl".into())
}

/// Replaces whole port numbers (not digits inside longer numbers) by their mapping.
fn remap(text: &str, ports: &BTreeMap<u16, u16>) -> String {
    let mut out = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()) {
            let end = (i..bytes.len())
                .find(|&j| !bytes[j].is_ascii_digit())
                .unwrap_or(bytes.len());
            let number = &text[i..end];
            match number.parse::<u16>().ok().and_then(|n| ports.get(&n)) {
                Some(to) => out.push_str(&to.to_string()),
                None => out.push_str(number),
            }
            i = end;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

/// The env of `container` as the kubelet resolves it for `pod`, values remapped.
fn resolved_env(
    pod: &Value,
    container: &Value,
    ports: &BTreeMap<u16, u16>,
) -> Vec<(String, String)> {
    let annotations = &pod["metadata"]["annotations"];
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod["metadata"]["name"].as_str().unwrap().to_string(),
                Some("metadata.namespace") => {
                    pod["metadata"]["namespace"].as_str().unwrap().to_string()
                }
                Some(path) if path.starts_with("metadata.annotations['") => {
                    let key = path
                        .trim_start_matches("metadata.annotations['")
                        .trim_end_matches("']");
                    annotations[key].as_str().unwrap_or("").to_string()
                }
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => remap(e["value"].as_str().unwrap_or(""), ports),
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knative_service_applied_with_kubectl_gets_a_guarded_pod_that_runs_as_its_spec_says() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let digest = format!("sha256:{}", "5".repeat(64));
    let rendered = render(
        json!({"injection": {"enabled": true, "image": {"repository": "ghcr.io/guardrail-dev/guardrail-sidecar", "digest": digest}}}),
    );
    let mut options = kube_emulator::Options {
        revision_pods: true,
        ..Default::default()
    };
    options
        .namespaces
        .extend([NAMESPACE.to_string(), MODELS.to_string()]);
    let emu = kube_emulator::Emulator::start(options)
        .await
        .expect("emulator");
    for template in [
        "secret.yaml",
        "validatingwebhookconfiguration.yaml",
        "mutatingwebhookconfiguration.yaml",
    ] {
        emu.apply_yaml(&rendered.manifests[&format!("guardrail/templates/{template}")])
            .unwrap_or_else(|e| panic!("{template}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    write_config(&rendered, dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let extra = [format!("--kubeconfig={}", kubeconfig.display())];
    let (root, chart) = (dir.path().to_path_buf(), rendered.clone());
    let (_webhook, _, https) =
        tokio::task::spawn_blocking(move || start_rendered_at(&chart, &root, &extra))
            .await
            .unwrap();
    // The Service's endpoint; the webhook wrote its CA into both configurations itself.
    let service = rendered.one("Service");
    emu.register_service(
        NAMESPACE,
        service["metadata"]["name"].as_str().unwrap(),
        443,
        https,
    );
    let name = rendered.one("MutatingWebhookConfiguration")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "caBundles in both configurations",
        Duration::from_secs(10),
        || async {
            let written = |kind: &str| {
                emu.get(kind, "", &name).is_some_and(|c| {
                    c["webhooks"].as_array().unwrap().iter().all(|w| {
                        w["clientConfig"]["caBundle"]
                            .as_str()
                            .is_some_and(|b| !b.is_empty())
                    })
                })
            };
            (written("mutatingwebhookconfigurations") && written("validatingwebhookconfigurations"))
                .then_some(())
        },
    )
    .await;

    // The user's Knative Service, opted in on its template, applied with kubectl.
    let mut ksvc = guardrail_e2e::webhook::manifest("examples/good/knative-service.yaml").remove(0);
    ksvc["spec"]["template"]["metadata"]["labels"] = json!({"guardrail.dev/inject": "true"});
    let file = dir.path().join("ksvc.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&ksvc).unwrap()).unwrap();
    let mut apply = Command::new(kubectl());
    apply
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["apply", "-f"])
        .arg(&file);
    let applied = tokio::task::spawn_blocking(move || apply.output().expect("run kubectl"))
        .await
        .unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let pod = eventually("the revision's pod", Duration::from_secs(20), || async {
        emu.list("pods", MODELS).unwrap().into_iter().next()
    })
    .await;
    assert_eq!(
        pod["metadata"]["labels"]["serving.knative.dev/revision"],
        "sentiment-00001"
    );
    let sidecar = container(&pod, "guardrail-sidecar");
    assert_eq!(
        sidecar["image"],
        format!("ghcr.io/guardrail-dev/guardrail-sidecar@{digest}")
    );
    let queue = container(&pod, "queue-proxy");
    assert_eq!(env_of(queue, "USER_PORT"), Some("8090"));
    assert_eq!(
        env_of(sidecar, "GUARDRAIL_UPSTREAM"),
        Some("http://127.0.0.1:8080")
    );
    // The token the ServiceAccount plugin mounted in the other containers is in ours.
    let token = |c: &Value| {
        c["volumeMounts"].as_array().and_then(|m| {
            m.iter()
                .find(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
                .cloned()
        })
    };
    assert!(token(sidecar).is_some(), "{sidecar}");
    assert_eq!(token(sidecar), token(container(&pod, "user-container")));
    assert!(env_of(sidecar, "GUARDRAIL_MEASURE_ONLY").is_none());

    // Run it. Ports: the pod's, mapped to free loopback ports.
    let ports: BTreeMap<u16, u16> = [8080, 8090, 9095]
        .into_iter()
        .map(|p| (p, free_port()))
        .collect();
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| remap(a.as_str().unwrap(), &ports))
        .collect();
    let mut cmd = Command::new(bin("guardrail-sidecar"));
    cmd.args(&args)
        .envs(resolved_env(&pod, sidecar, &ports))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null());
    let _sidecar_process = ChildGuard::spawn("guardrail-sidecar", &mut cmd);
    let admin = format!("http://127.0.0.1:{}", ports[&9095]);

    // queue-proxy's view: where it forwards, and the probe it runs for the user container.
    let user_port = remap(env_of(queue, "USER_PORT").unwrap(), &ports);
    let probe: Value = serde_json::from_str(&remap(
        env_of(queue, "SERVING_READINESS_PROBE").unwrap(),
        &ports,
    ))
    .unwrap();
    let probe_url = format!(
        "http://{}:{}{}",
        probe["httpGet"]["host"].as_str().unwrap(),
        probe["httpGet"]["port"],
        probe["httpGet"]["path"].as_str().unwrap()
    );
    let client = reqwest::Client::new();
    let probe_status = || async {
        client
            .get(&probe_url)
            .header("K-Kubelet-Probe", "queue")
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };
    // Not ready while the model is not: the sidecar runs the model's own probe.
    eventually(
        "the sidecar to answer not ready",
        Duration::from_secs(20),
        || async { (probe_status().await == Some(503)).then_some(()) },
    )
    .await;
    let model = ModelServer::spawn(dir.path(), ports[&8080]);
    model.wait_ready().await;
    eventually(
        "ready through the sidecar once the model is",
        Duration::from_secs(20),
        || async { (probe_status().await == Some(200)).then_some(()) },
    )
    .await;

    // Traffic as queue-proxy sends it, and probes through the proxy port.
    let predict = format!("http://127.0.0.1:{user_port}/v1/models/{MODEL}:predict");
    for _ in 0..12 {
        let r = client
            .post(&predict)
            .json(&json!({"instances": [[1.0, 2.0]]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let health = format!("http://127.0.0.1:{user_port}/v2/health/ready");
    for _ in 0..3 {
        let r = client
            .get(&health)
            .header("K-Kubelet-Probe", "queue")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let revision = r#"revision="sentiment-00001""#;
    let metrics = eventually("the sidecar's counts", Duration::from_secs(10), || async {
        let text = reqwest::get(format!("{admin}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(&format!(
            "guardrail_requests_total{{{revision},class=\"2xx\"}} 12"
        ))
        .then_some(text)
    })
    .await;
    assert!(
        metrics.contains(&format!("guardrail_probe_requests_total{{{revision}}} 3")),
        "{metrics}"
    );
    let guardrails: Value = reqwest::get(format!("{admin}/guardrails"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(guardrails["identity"]["service"], SERVICE);
    assert_eq!(guardrails["identity"]["pod"], pod["metadata"]["name"]);
    assert_eq!(
        guardrails["window"]["requests"], 12,
        "probes are not in the window"
    );
}
