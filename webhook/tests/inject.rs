//! Golden files of sidecar injection (Istio's `pkg/kube/inject/testdata` style): every
//! `tests/inject/<case>.yaml` pod, injected as `/mutate` would at admission, must equal
//! `tests/inject/golden/<case>.yaml` (outcome, warnings, pod). Regenerate with
//! `GUARDRAIL_UPDATE_GOLDEN=1 cargo test -p guardrail-webhook --test inject` and review
//! the diff. Each case also checks what holds whatever the golden says:
//! - the patch applies, and a second injection changes nothing;
//! - the validating verdict (every finding) is the same before and after;
//! - an injected pod runs our container wired as queue-proxy expects.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use guardrail_webhook::{
    inject::{Context, Outcome},
    workload::{Workload, WorkloadKind},
    Config, Engine,
};
use serde_json::{json, Value};

const IMAGE: &str =
    "ghcr.io/guardrail-dev/guardrail-sidecar@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn engine() -> Engine {
    let config = Config::parse(&format!("injection:\n  image: {IMAGE}\n")).expect("config");
    Engine::new(config).expect("engine")
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject")
}

fn cases() -> Vec<(String, Value)> {
    let mut cases: Vec<_> = std::fs::read_dir(dir())
        .expect("tests/inject")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read");
            (name, serde_saphyr::from_str(&text).expect("yaml"))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        cases.len() >= 15,
        "golden inputs are missing: {}",
        cases.len()
    );
    cases
}

fn admission() -> Context<'static> {
    Context {
        selected: true,
        namespace: Some("ml-serving"),
        at_admission: true,
    }
}

/// Injects as `/mutate` does; returns the outcome, warnings and patched pod.
fn inject(engine: &Engine, pod: &Value) -> (Outcome, Vec<String>, Value) {
    let injection = engine.injector().inject(pod, &[], &admission());
    let mut out = pod.clone();
    json_patch::patch(&mut out, &injection.patch)
        .expect("the patch applies to the pod as received");
    if injection.patch.0.is_empty() {
        assert_eq!(&out, pod);
    }
    (injection.outcome, injection.warnings, out)
}

/// Every finding of the validating engine, as comparable text.
async fn findings(engine: &Engine, pod: &Value) -> (bool, BTreeSet<String>) {
    let workload = Workload::read(WorkloadKind::Pod, pod).expect("pod reads");
    let verdict = engine.evaluate(&workload).await;
    let all = verdict
        .findings
        .iter()
        .map(|f| {
            format!(
                "{:?} {} {} {}",
                f.violation.policy, f.violation.field, f.violation.message, f.enforced
            )
        })
        .collect();
    (verdict.allowed(), all)
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

#[tokio::test]
async fn injected_pods_match_their_golden_files_and_keep_their_verdict() {
    let engine = engine();
    let update = std::env::var_os("GUARDRAIL_UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for (name, pod) in cases() {
        let (outcome, warnings, out) = inject(&engine, &pod);
        let golden = json!({"outcome": outcome.as_str(), "warnings": warnings, "pod": out});
        let path = dir().join("golden").join(format!("{name}.yaml"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_saphyr::to_string(&golden).unwrap();
            std::fs::write(&path, text).unwrap();
        } else {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (GUARDRAIL_UPDATE_GOLDEN=1 writes it)",
                    path.display()
                )
            });
            let expected: Value = serde_saphyr::from_str(&text).unwrap();
            if expected != golden {
                mismatched.push(name.clone());
            }
        }

        // Idempotent: the output injected again is unchanged.
        let (again, _, twice) = inject(&engine, &out);
        assert_eq!(twice, out, "{name}: a second injection changed the pod");
        if outcome == Outcome::Injected {
            assert_eq!(again, Outcome::Unchanged, "{name}");
        }

        // Injection never changes the validating verdict.
        let before = findings(&engine, &pod).await;
        let after = findings(&engine, &out).await;
        assert_eq!(before, after, "{name}: injection changed the verdict");

        match outcome {
            Outcome::Injected => assert_wired(&name, &pod, &out),
            Outcome::NotSelected | Outcome::Unchanged => assert!(warnings.is_empty(), "{name}"),
            _ => assert!(
                !warnings.is_empty(),
                "{name}: {outcome:?} without a warning"
            ),
        }
    }
    assert!(mismatched.is_empty(), "outputs differ from their golden files: {mismatched:?} (GUARDRAIL_UPDATE_GOLDEN=1 rewrites them; review the diff)");
}

/// Checks, independently of the golden text, that queue-proxy now reaches the model
/// through our container and probes through it.
fn assert_wired(name: &str, before: &Value, after: &Value) {
    let ours =
        container(after, "guardrail-sidecar").unwrap_or_else(|| panic!("{name}: no sidecar"));
    assert_eq!(ours["image"], IMAGE);
    let port_named = |n: &str| {
        ours["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .and_then(|p| p["containerPort"].as_u64())
    };
    let admin = port_named("guardrail-admin").expect("admin port");
    let args: Vec<&str> = ours["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&format!("--admin-listen=0.0.0.0:{admin}").as_str()),
        "{name}: {args:?}"
    );
    let sc = &ours["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(
        ours["resources"]["limits"].get("cpu").is_none(),
        "{name}: no CPU limit"
    );
    let token_before = container(before, "user-container")
        .or_else(|| container(before, "kserve-container"))
        .or_else(|| container(before, "model"))
        .and_then(|c| c["volumeMounts"].as_array())
        .is_some_and(|m| {
            m.iter()
                .any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
        });
    let token_after = ours["volumeMounts"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
    });
    assert_eq!(token_before, token_after, "{name}: token mount");
    assert_eq!(
        env(ours, "GUARDRAIL_MEASURE_ONLY") == Some("true"),
        !token_after,
        "{name}"
    );

    let Some(qp_before) = container(before, "queue-proxy") else {
        return;
    };
    let qp = container(after, "queue-proxy").unwrap();
    let proxy = port_named("guardrail-proxy").expect("proxy port");
    assert_eq!(
        env(qp, "USER_PORT"),
        Some(proxy.to_string().as_str()),
        "{name}"
    );
    assert!(
        args.contains(&format!("--listen=0.0.0.0:{proxy}").as_str()),
        "{name}: {args:?}"
    );
    let old_user_port = env(qp_before, "USER_PORT").unwrap();
    assert_eq!(
        env(ours, "GUARDRAIL_UPSTREAM"),
        Some(format!("http://127.0.0.1:{old_user_port}").as_str()),
        "{name}"
    );
    // The probe queue-proxy runs for the user container now asks our admin port.
    let probes: Value = serde_json::from_str(env(qp, "SERVING_READINESS_PROBE").unwrap()).unwrap();
    let list = match &probes {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    };
    assert!(
        list.iter()
            .any(|p| p["httpGet"]["port"] == admin && p["httpGet"]["path"] == "/readyz"),
        "{name}: {probes}"
    );
    // Every used port is distinct in the pod.
    let mut ports = BTreeSet::new();
    for c in ["containers", "initContainers"]
        .iter()
        .filter_map(|l| after["spec"][l].as_array())
        .flatten()
    {
        for p in c["ports"].as_array().into_iter().flatten() {
            assert!(
                ports.insert(p["containerPort"].as_u64().unwrap()),
                "{name}: port {p} twice"
            );
        }
    }
    assert!(
        !ports.contains(&old_user_port.parse::<u64>().unwrap())
            || old_user_port != proxy.to_string()
    );
}

/// What KServe's agent injector does to a pod (agent_injector.go): an `agent` container
/// on 9081 forwarding to the kserve-container's first port, and `USER_PORT` → 9081.
fn kserve_agent_injector(pod: &mut Value) {
    let containers = pod["spec"]["containers"].as_array_mut().unwrap();
    let qp = containers
        .iter_mut()
        .find(|c| c["name"] == "queue-proxy")
        .unwrap();
    for e in qp["env"].as_array_mut().unwrap() {
        if e["name"] == "USER_PORT" {
            e["value"] = json!("9081");
        }
    }
    containers.insert(
        1,
        json!({
            "name": "agent",
            "image": format!("docker.io/kserve/agent@sha256:{}", "c".repeat(64)),
            "args": ["--enable-puller", "--component-port", "8080"],
            "ports": [{"name": "agent-port", "containerPort": 9081, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 9081}},
        }),
    );
}

#[tokio::test]
async fn kserve_agent_before_or_after_us_converges_to_one_chain() {
    let engine = engine();
    let serverless = cases()
        .into_iter()
        .find(|(n, _)| n == "kserve-serverless")
        .unwrap()
        .1;

    // KServe first, then us.
    let mut first = serverless.clone();
    kserve_agent_injector(&mut first);
    let (outcome, _, kserve_then_us) = inject(&engine, &first);
    assert_eq!(outcome, Outcome::Injected);

    // Us first, then KServe (which overwrites USER_PORT), then us again (reinvocation).
    let (_, _, mut us_first) = inject(&engine, &serverless);
    kserve_agent_injector(&mut us_first);
    let (outcome, _, us_then_kserve) = inject(&engine, &us_first);
    assert_eq!(outcome, Outcome::Updated, "our upstream follows USER_PORT");

    for (order, pod) in [
        ("kserve, guardrail", &kserve_then_us),
        ("guardrail, kserve", &us_then_kserve),
    ] {
        let qp = container(pod, "queue-proxy").unwrap();
        let ours = container(pod, "guardrail-sidecar").unwrap();
        // queue-proxy → guardrail (8090) → agent (9081) → model (8080).
        assert_eq!(env(qp, "USER_PORT"), Some("8090"), "{order}");
        assert_eq!(
            env(ours, "GUARDRAIL_UPSTREAM"),
            Some("http://127.0.0.1:9081"),
            "{order}"
        );
        let agent = container(pod, "agent").unwrap();
        assert!(agent["args"].as_array().unwrap().contains(&json!("8080")));
        // The probe runs through us against the model itself.
        let upstream_probe: Value =
            serde_json::from_str(env(ours, "GUARDRAIL_UPSTREAM_PROBE").unwrap()).unwrap();
        assert_eq!(upstream_probe["httpGet"]["port"], 8080, "{order}");
        // KServe's agent, trusted by image, is no serving container: allowed.
        let (allowed, found) = findings(&engine, pod).await;
        assert!(allowed, "{order}: {found:?}");
        // Stable: one more round changes nothing.
        let (outcome, _, again) = inject(&engine, pod);
        assert_eq!((outcome, &again), (Outcome::Unchanged, pod), "{order}");
    }
    // Allowed with and without injection.
    assert!(findings(&engine, &first).await.0);
}

#[tokio::test]
async fn an_agent_lookalike_is_not_trusted_by_name() {
    let engine = engine();
    let mut pod = cases()
        .into_iter()
        .find(|(n, _)| n == "kserve-serverless")
        .unwrap()
        .1;
    kserve_agent_injector(&mut pod);
    pod["spec"]["containers"][1]["image"] = json!(format!(
        "docker.io/attacker/agent@sha256:{}",
        "c".repeat(64)
    ));
    let (allowed, found) = findings(&engine, &pod).await;
    assert!(!allowed, "{found:?}");
    assert!(
        found
            .iter()
            .any(|f| f.contains("containers[1].livenessProbe")),
        "{found:?}"
    );
}

#[tokio::test]
async fn the_probe_policy_reads_the_original_probe_from_our_sidecar_only() {
    let engine = engine();
    let http = cases()
        .into_iter()
        .find(|(n, _)| n == "knative-http")
        .unwrap()
        .1;
    let (_, _, mut out) = inject(&engine, &http);
    assert!(findings(&engine, &out).await.0);
    fn sidecar(pod: &mut Value) -> &mut Value {
        pod["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .last_mut()
            .unwrap()
    }
    // What our sidecar will run is what is judged: a TCP original is denied…
    for e in sidecar(&mut out)["env"].as_array_mut().unwrap() {
        if e["name"] == "GUARDRAIL_UPSTREAM_PROBE" {
            e["value"] = json!(r#"{"tcpSocket":{"port":8080}}"#);
        }
    }
    let (allowed, found) = findings(&engine, &out).await;
    assert!(!allowed, "{found:?}");
    assert!(found.iter().any(|f| f.contains("TCP")), "{found:?}");
    // …and so is no original at all (nothing checks the model).
    let env = sidecar(&mut out)["env"].as_array_mut().unwrap();
    env.retain(|e| e["name"] != "GUARDRAIL_UPSTREAM_PROBE");
    assert!(!findings(&engine, &out).await.0);
}

/// What Istio's injector does after us (`pkg/kube/inject`): `istio-proxy` appended, and
/// every container's kubelet HTTP probes rewritten to its agent (`/app-health/<container>/
/// readyz|livez` on 15020), ours included.
fn istio_injector(pod: &mut Value) {
    let containers = pod["spec"]["containers"].as_array_mut().unwrap();
    for c in containers.iter_mut() {
        let name = c["name"].as_str().unwrap().to_string();
        for (probe, kind) in [("readinessProbe", "readyz"), ("livenessProbe", "livez")] {
            if c[probe]["httpGet"].is_object() {
                c[probe]["httpGet"] =
                    json!({"path": format!("/app-health/{name}/{kind}"), "port": 15020});
            }
        }
    }
    containers.push(json!({
        "name": "istio-proxy",
        "image": format!("docker.io/istio/proxyv2@sha256:{}", "d".repeat(64)),
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
    }));
}

#[tokio::test]
async fn istio_after_us_keeps_its_probe_rewriting_and_our_wiring() {
    let engine = engine();
    let pod = cases()
        .into_iter()
        .find(|(n, _)| n == "knative-http")
        .unwrap()
        .1;
    let (_, _, mut out) = inject(&engine, &pod);
    istio_injector(&mut out);
    // Reinvoked after Istio: nothing of ours is re-rendered, Istio's rewrite survives.
    let (outcome, _, again) = inject(&engine, &out);
    assert_eq!((outcome, &again), (Outcome::Unchanged, &out));
    let ours = container(&again, "guardrail-sidecar").unwrap();
    assert_eq!(ours["readinessProbe"]["httpGet"]["port"], 15020);
    assert_eq!(
        env(container(&again, "queue-proxy").unwrap(), "USER_PORT"),
        Some("8090")
    );
    // And the verdict is still the input's.
    assert_eq!(
        findings(&engine, &pod).await,
        findings(&engine, &again).await
    );
}

#[tokio::test]
async fn every_order_of_guardrail_kserve_and_istio_converges() {
    let engine = engine();
    let serverless = cases()
        .into_iter()
        .find(|(n, _)| n == "kserve-serverless")
        .unwrap()
        .1;
    type Injector<'a> = (&'static str, Box<dyn Fn(&mut Value) + 'a>);
    let ours = |pod: &mut Value| *pod = inject(&engine, pod).2;
    let injectors: [Injector; 3] = [
        ("guardrail", Box::new(ours)),
        ("kserve", Box::new(kserve_agent_injector)),
        ("istio", Box::new(istio_injector)),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut results = Vec::new();
    for order in orders {
        let mut pod = serverless.clone();
        for &i in &order {
            (injectors[i].1)(&mut pod);
        }
        // reinvocationPolicy IfNeeded: ours runs again when someone changed the pod after it.
        if order[2] != 0 {
            ours(&mut pod);
        }
        let names: Vec<_> = order.iter().map(|&i| injectors[i].0).collect();
        let qp = container(&pod, "queue-proxy").unwrap();
        let sidecar = container(&pod, "guardrail-sidecar").unwrap();
        // queue-proxy → guardrail → agent → model, the probe through us.
        assert_eq!(env(qp, "USER_PORT"), Some("8090"), "{names:?}");
        assert_eq!(
            env(sidecar, "GUARDRAIL_UPSTREAM"),
            Some("http://127.0.0.1:9081"),
            "{names:?}"
        );
        let probe: Value =
            serde_json::from_str(env(qp, "SERVING_READINESS_PROBE").unwrap()).unwrap();
        assert_eq!(probe["httpGet"]["path"], "/readyz", "{names:?}");
        let original: Value =
            serde_json::from_str(env(sidecar, "GUARDRAIL_UPSTREAM_PROBE").unwrap()).unwrap();
        assert_eq!(
            original["httpGet"]["port"], 8080,
            "{names:?}: the model's own probe"
        );
        let (allowed, found) = findings(&engine, &pod).await;
        assert!(allowed, "{names:?}: {found:?}");
        results.push(found);
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
}
