use serde_json::json;

use crate::image::Image;

use super::*;

fn injector() -> Injector {
    let config = InjectionConfig {
        image: Some(format!(
            "ghcr.io/guardrail-dev/guardrail-sidecar@sha256:{}",
            "1".repeat(64)
        )),
        ..Default::default()
    };
    Injector::new(
        config,
        vec!["kube-system".into()],
        "guardrail.dev/warmup-seconds".into(),
    )
    .unwrap()
}

fn admission(namespace: &str) -> Context<'_> {
    Context {
        selected: true,
        namespace: Some(namespace),
        at_admission: true,
    }
}

fn ops_json(injection: &Injection) -> serde_json::Value {
    serde_json::to_value(&injection.patch).unwrap()
}

fn plain_pod() -> serde_json::Value {
    json!({
        "metadata": {"labels": {"guardrail.dev/inject": "true"}},
        "spec": {"containers": [{"name": "model", "image": "x@sha256:00",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            "lifecycle": {"preStop": {"tcpSocket": {"port": "http"}}}}]}
    })
}

#[test]
fn ports_skip_reserved_istio_and_used_ones() {
    assert_eq!(free_port(8090, &[]), Some(8090));
    assert_eq!(free_port(8090, &[8090, 8091]), Some(8092));
    assert_eq!(free_port(9090, &[]), Some(9092), "Knative's metrics ports");
    assert_eq!(free_port(15000, &[]), Some(15091), "Istio's range");
    assert_eq!(free_port(65535, &[65535]), None);
}

#[test]
fn a_plain_pod_hands_its_port_name_to_the_sidecar_and_named_references_get_the_number() {
    let injection = injector().inject(&plain_pod(), &["spec", "template"], &admission("ml"));
    assert_eq!(injection.outcome, Outcome::Injected);
    let ops = ops_json(&injection);
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/spec/template/spec/containers/0/ports/0/name",
            "/spec/template/spec/containers/0/readinessProbe/httpGet/port",
            "/spec/template/spec/containers/0/lifecycle/preStop/tcpSocket/port",
            "/spec/template/spec/containers/-",
        ]
    );
    assert_eq!(ops[0]["op"], "remove");
    assert_eq!(ops[1]["value"], 8080);
    let sidecar = &ops[3]["value"];
    assert_eq!(
        sidecar["ports"][0],
        json!({"name": "http", "containerPort": 8090, "protocol": "TCP"})
    );
    // No token mount in the pod at admission: measure-only, and said so.
    assert!(
        injection.warnings[0].contains("measure-only"),
        "{:?}",
        injection.warnings
    );
}

#[test]
fn missing_parents_are_created_and_pointer_tokens_escaped() {
    let mut ops = Ops::new(&[]);
    ops.append(&["spec", "initContainers"], None, json!({"name": "a"}));
    ops.add(
        &["metadata", "annotations", "guardrail.dev/x~y"],
        json!("1"),
    );
    let value = serde_json::to_value(ops.into_patch()).unwrap();
    assert_eq!(value[0]["path"], "/spec/initContainers");
    assert_eq!(value[0]["value"], json!([{"name": "a"}]));
    assert_eq!(
        value[1]["path"],
        "/metadata/annotations/guardrail.dev~1x~0y"
    );
}

#[test]
fn set_env_replaces_a_value_from_and_appends_when_absent() {
    let env = json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]);
    let mut ops = Ops::new(&[]);
    ops.set_env(&["c"], Some(&env), "A", "1".into());
    ops.set_env(&["c"], Some(&env), "B", "2".into());
    ops.set_env(&["d"], None, "C", "3".into());
    let mut doc = json!({"c": {"env": env}, "d": {}});
    json_patch::patch(&mut doc, &ops.into_patch()).unwrap();
    assert_eq!(
        doc,
        json!({"c": {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
               "d": {"env": [{"name": "C", "value": "3"}]}})
    );
}

#[test]
fn selection_opt_out_exemption_and_configuration() {
    let injector = injector();
    let mut pod = plain_pod();
    // The CLI without --all: the label selects.
    let cli = Context {
        selected: false,
        namespace: None,
        at_admission: false,
    };
    assert_eq!(injector.inject(&pod, &[], &cli).outcome, Outcome::Injected);
    pod["metadata"]["labels"]["guardrail.dev/inject"] = json!("false");
    assert_eq!(
        injector.inject(&pod, &[], &admission("ml")).outcome,
        Outcome::NotSelected
    );
    pod["metadata"]["labels"] = json!({});
    assert_eq!(
        injector.inject(&pod, &[], &cli).outcome,
        Outcome::NotSelected
    );
    assert_eq!(
        injector
            .inject(&pod, &[], &admission("kube-system"))
            .outcome,
        Outcome::Exempt
    );
    let unconfigured = Injector::new(InjectionConfig::default(), vec![], "w".into()).unwrap();
    let injection = unconfigured.inject(&pod, &[], &admission("ml"));
    assert_eq!(injection.outcome, Outcome::NotConfigured);
    assert!(injection.warnings[0].contains("injection.image"));
}

#[test]
fn ours_is_told_by_name_and_repository_never_by_name_alone() {
    let injector = injector();
    let digest = format!("@sha256:{}", "2".repeat(64));
    let ours = Image::new(format!("ghcr.io/guardrail-dev/guardrail-sidecar{digest}"));
    let ours = ours.ok();
    assert!(
        injector.is_ours(Some("guardrail-sidecar"), ours),
        "any digest of our repository"
    );
    assert!(!injector.is_ours(Some("other"), ours));
    for image in [
        format!("ghcr.io/guardrail-dev/guardrail-sidecar-evil{digest}"),
        format!("docker.io/guardrail-dev/guardrail-sidecar{digest}"),
        "not an image".into(),
    ] {
        let parsed = Image::new(image.as_str());
        assert!(
            !injector.is_ours(Some("guardrail-sidecar"), parsed.ok()),
            "{image}"
        );
    }
    assert!(!injector.is_ours(Some("guardrail-sidecar"), None));
}

#[test]
fn the_sidecar_config_reaches_the_sidecar_as_text_it_accepts() {
    let config = InjectionConfig {
        image: Some(format!(
            "ghcr.io/guardrail-dev/guardrail-sidecar@sha256:{}",
            "1".repeat(64)
        )),
        sidecar_config: Some(
            json!({"guardrails": {"minRequests": 20}, "window": {"length": "30s", "subWindows": 6}}),
        ),
        ..Default::default()
    };
    let injector = Injector::new(config, vec![], "w".into()).unwrap();
    let injection = injector.inject(&plain_pod(), &[], &admission("ml"));
    let ops = ops_json(&injection);
    let sidecar = &ops.as_array().unwrap().last().unwrap()["value"];
    let text = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GUARDRAIL_SIDECAR_CONFIG")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let parsed = guardrail_sidecar::Config::from_yaml(text).unwrap();
    assert_eq!(parsed.guardrails.min_requests, 20);
    assert_eq!(parsed.window.length, std::time::Duration::from_secs(30));
}
