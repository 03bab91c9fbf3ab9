//! The Helm chart (`charts/guardrail`), rendered by the real Helm engine (helm-python-sdk,
//! the Helm v4 SDK as a library), linted, validated against the Kubernetes OpenAPI schemas
//! (kubernetes-validate), and held to what the binary really does: every rendered flag
//! exists in `guardrail-webhook serve --help`, the rendered arguments start the real
//! server (secret mode; self-managed mode against the Kubernetes API emulator, within the
//! rendered RBAC), and the rendered Deployment passes our own `guardrail-webhook check`.

mod chart_support;
// The kubelet-style volume and the API-server-like client of the certificate tests.
#[allow(dead_code)]
mod certs_support;

use std::{collections::BTreeSet, process::Command, time::Duration};

use chart_support::{
    all_options, assert_lint_clean, assert_valid_kubernetes, check_rendered, rbac_allows, render,
    render_all, routed, secret_mode, serve_help, start_rendered, write_config, NAMESPACE,
};
use guardrail_e2e::bins::bin;
use serde_json::json;

#[test]
fn every_configuration_renders_lints_and_validates_against_kubernetes() {
    let cases = [
        ("default", json!({})),
        ("secret", secret_mode()),
        (
            "cert-manager",
            json!({"tls": {"mode": "secret", "secret": {"name": "s", "certManagerInjectFrom": "guardrail-system/guardrail"}}}),
        ),
        (
            "self-managed-without-secret",
            json!({"tls": {"selfManaged": {"createSecret": false}}}),
        ),
        ("all-options", all_options()),
        (
            "cert-manager-own-ca",
            json!({"tls": {"mode": "certManager"}, "injection": {"enabled": true}}),
        ),
        (
            "cert-manager-cluster-issuer",
            json!({"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
        ),
    ];
    let expected_default: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    .map(String::from)
    .into();
    for ((name, _), rendered) in cases.iter().zip(render_all(&cases)) {
        if let Some(error) = &rendered.error {
            panic!("{name}: helm template failed: {error}");
        }
        assert_lint_clean(&rendered);
        assert_valid_kubernetes(&rendered);
        if *name == "default" {
            assert_eq!(rendered.kinds(), expected_default);
        }
    }
}

#[test]
fn the_webhook_configuration_fails_closed_and_routes_every_pod_making_kind() {
    let rendered = render(json!({}));
    let vwc = rendered.one("ValidatingWebhookConfiguration");
    let hook = &vwc["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    // The API server must wait longer than the server's own deadline.
    let request_timeout: u64 = rendered.flags()["--request-timeout"]
        .trim_end_matches('s')
        .parse()
        .expect("--request-timeout in seconds");
    let timeout = hook["timeoutSeconds"].as_u64().expect("timeoutSeconds");
    assert!(
        timeout > request_timeout && timeout <= 30,
        "{timeout} vs {request_timeout}"
    );

    let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["key"], "kubernetes.io/metadata.name");
    assert_eq!(excluded["operator"], "NotIn");
    assert_eq!(excluded["values"], json!(["kube-system", NAMESPACE]));
    assert!(
        hook.get("objectSelector").is_none(),
        "authors control object labels"
    );

    // It reaches our Service's HTTPS port, which is the container's --listen port.
    let service = rendered.one("Service");
    let target = &hook["clientConfig"]["service"];
    assert_eq!(target["name"], service["metadata"]["name"]);
    assert_eq!(target["namespace"], NAMESPACE);
    assert_eq!(target["path"], "/validate");
    let port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == target["port"])
        .expect("the Service has the webhook's port")
        .clone();
    let container = rendered.container();
    let container_port = container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .find(|p| p["name"] == port["targetPort"])
        .expect("the Service's targetPort names a container port")["containerPort"]
        .clone();
    assert_eq!(
        rendered.flags()["--listen"],
        format!("0.0.0.0:{container_port}")
    );

    // Every (group, resource) the reviewed example routes, with CREATE and UPDATE.
    let ours = routed(&hook["rules"]);
    let example = guardrail_e2e::webhook::manifest("examples/webhook-configuration.yaml");
    assert_eq!(ours, routed(&example[0]["webhooks"][0]["rules"]));
    for needed in [
        ("", "pods/ephemeralcontainers"),
        ("batch", "cronjobs"),
        ("serving.knative.dev", "revisions"),
        ("serving.kserve.io", "inferenceservices"),
    ] {
        assert!(
            ours.contains(&(needed.0.into(), needed.1.into())),
            "{needed:?} is not routed"
        );
    }
}

#[test]
fn monitoring_objects_match_the_prometheus_operator_crds() {
    let rendered = render(json!({
        "serviceMonitor": {"enabled": true},
        "podMonitor": {"enabled": true},
        "prometheusRule": {"enabled": true},
    }));
    let checked = chart_support::assert_valid_against_crds(
        &rendered,
        &["ServiceMonitor", "PodMonitor", "PrometheusRule"],
        &[
            "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
            "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
            "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
        ],
    );
    assert_eq!(checked, 3);
    // The PodMonitor scrapes the port the injector names.
    let pod_monitor = rendered.one("PodMonitor");
    assert_eq!(
        pod_monitor["spec"]["podMetricsEndpoints"][0]["port"],
        "guardrail-admin"
    );
}

#[test]
fn the_alerts_pass_promtool_and_every_alert_has_a_unit_test() {
    let rendered = render(json!({"prometheusRule": {"enabled": true}}));
    let rule = rendered.one("PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_saphyr::to_string(&json!({"groups": rule["spec"]["groups"]})).unwrap(),
    )
    .unwrap();
    let root = guardrail_e2e::webhook::workspace_root();
    let tests =
        std::fs::read_to_string(root.join("charts/guardrail/tests/alerts.test.yaml")).unwrap();
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).unwrap();
    let promtool =
        std::env::var_os("GUARDRAIL_PROMTOOL").unwrap_or_else(|| "/usr/bin/promtool".into());
    for args in [
        vec!["check", "rules", "rules.yaml"],
        vec!["test", "rules", "alerts.test.yaml"],
    ] {
        let output = Command::new(&promtool)
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("run promtool (Debian prometheus, tests/setup/prometheus.sh)");
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let alerts: Vec<String> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no promtool test"
        );
    }
}

#[test]
fn the_dashboard_is_built_by_grafanas_builder_and_shipped_as_is() {
    let root = guardrail_e2e::webhook::workspace_root();
    let file = root.join("charts/guardrail/dashboards/guardrail.json");
    let output = Command::new(chart_support::tool("GUARDRAIL_CHART_PYTHON", "python"))
        .arg(root.join("charts/tools/dashboard.py"))
        .arg("--check")
        .arg(&file)
        .output()
        .expect("run dashboard.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = render(json!({"dashboard": {"enabled": true}}));
    let map = rendered.config_map();
    let map = rendered
        .get("ConfigMap")
        .into_iter()
        .find(|m| m["metadata"]["name"] == "guardrail-dashboard")
        .unwrap_or(map);
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value =
        serde_json::from_str(map["data"]["guardrail.json"].as_str().unwrap()).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(shipped, committed);
    assert!(
        render(json!({})).get("ConfigMap").len() == 1,
        "off by default"
    );
}

#[test]
fn cert_manager_mode_issues_the_services_certificate_and_injects_its_ca() {
    let rendered = render(json!({"tls": {"mode": "certManager"}, "injection": {"enabled": true}}));
    let checked = chart_support::assert_valid_against_crds(
        &rendered,
        &["Issuer", "Certificate"],
        &[
            "cert-manager/cert-manager.io_certificates.yaml",
            "cert-manager/cert-manager.io_issuers.yaml",
        ],
    );
    assert_eq!(
        checked, 4,
        "self-signed root, CA Certificate, CA Issuer, serving Certificate"
    );
    let certificates = rendered.get("Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == "guardrail-serving")
        .expect("the serving Certificate");
    // It covers the names the API server dials, and is issued by the chart's CA Issuer.
    let service = rendered.one("Service");
    let name = service["metadata"]["name"].as_str().unwrap();
    let dns: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        dns.contains(&format!("{name}.{NAMESPACE}.svc").as_str()),
        "{dns:?}"
    );
    assert_eq!(serving["spec"]["issuerRef"]["name"], "guardrail-ca");
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["isCA"] == true)
        .expect("CA Certificate");
    let ca_issuer = rendered
        .get("Issuer")
        .into_iter()
        .find(|i| i["spec"]["ca"].is_object())
        .expect("CA Issuer");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    // cainjector writes the caBundle of both configurations from that Certificate.
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(
            rendered.one(kind)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{NAMESPACE}/guardrail-serving"),
            "{kind}"
        );
    }
    // The Deployment serves the Secret cert-manager writes, with no API access.
    let deployment = rendered.one("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(
        volume["secret"]["secretName"],
        serving["spec"]["secretName"]
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        rendered.get("Secret").is_empty(),
        "cert-manager owns the Secret"
    );
    let flags = rendered.flags();
    assert!(!flags.contains_key("--manage-webhook-configurations"));
    // An issuer of the user's: no CA objects of ours.
    let theirs = render(
        json!({"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
    );
    assert!(theirs.get("Issuer").is_empty());
    assert_eq!(
        theirs.one("Certificate")["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cert_manager_mode_the_webhook_serves_the_renewed_certificate() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rendered = render(json!({"tls": {"mode": "certManager"}}));
    let dir = tempfile::tempdir().unwrap();
    // What cert-manager writes: two issuances, as the kubelet publishes the Secret.
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    certs_support::generate(&first);
    certs_support::generate(&second);
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    let mut volume = certs_support::Volume::new(&dir.path().join("tls"), &first);
    write_config(&rendered, dir.path());
    let (root, chart) = (dir.path().to_path_buf(), rendered.clone());
    // The kubelet's atomic swap is seen by the file watch (the rendered 30 s re-read is
    // the backstop).
    let (mut server, _, https) =
        tokio::task::spawn_blocking(move || chart_support::start_rendered_at(&chart, &root, &[]))
            .await
            .unwrap();
    let cas = [
        certs_support::read(&first.join("ca.crt")),
        certs_support::read(&second.join("ca.crt")),
    ];
    let client = certs_support::client(&cas);
    let serial = |dir: &std::path::Path| {
        certs_support::serial_of_pem(&certs_support::read(&dir.join("tls.crt")))
    };
    let served = certs_support::review(https, client.clone(), "uid-1")
        .await
        .unwrap();
    assert_eq!(served, serial(&first));
    volume.publish(&second);
    let renewed = serial(&second);
    guardrail_e2e::process::eventually(
        "the renewed certificate served",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let renewed = renewed.clone();
            async move {
                let served = certs_support::review(https, client, "uid-2").await.ok()?;
                (served == renewed).then_some(())
            }
        },
    )
    .await;
    let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(25)))
        .await
        .unwrap()
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn the_readme_values_table_is_generated_from_values_yaml_and_current() {
    let root = guardrail_e2e::webhook::workspace_root();
    let output = Command::new(chart_support::tool("GUARDRAIL_CHART_PYTHON", "python"))
        .arg(root.join("charts/tools/values_table.py"))
        .arg("--check")
        .arg(root.join("charts/guardrail"))
        .output()
        .expect("run values_table.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let readme = std::fs::read_to_string(root.join("charts/guardrail/README.md")).unwrap();
    for value in [
        "injection.enabled",
        "tls.mode",
        "webhook.failurePolicy",
        "sidecarRBAC.bindings",
    ] {
        assert!(
            readme.contains(&format!("| `{value}` |")),
            "{value} is not in the table"
        );
    }
}

#[test]
fn injection_renders_a_reinvoked_mutating_webhook_beside_the_validating_one() {
    let off = render(json!({}));
    assert!(
        off.get("MutatingWebhookConfiguration").is_empty(),
        "off by default"
    );
    let rendered = render(json!({"injection": {"enabled": true}}));
    let mwc = rendered.one("MutatingWebhookConfiguration");
    let vwc = rendered.one("ValidatingWebhookConfiguration");
    // One name for both kinds: the self-managed CA bundle and its ClusterRole cover both.
    assert_eq!(mwc["metadata"]["name"], vwc["metadata"]["name"]);
    assert_eq!(
        rendered.flags()["--manage-webhook-configurations"],
        mwc["metadata"]["name"].as_str().unwrap()
    );
    let hooks = mwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(
        hooks.len(),
        2,
        "a pod-label entry and a namespace-label entry"
    );
    let request_timeout: u64 = rendered.flags()["--request-timeout"]
        .trim_end_matches('s')
        .parse()
        .unwrap();
    for hook in hooks {
        assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(hook["clientConfig"]["service"], {
            let mut s = vwc["webhooks"][0]["clientConfig"]["service"].clone();
            s["path"] = json!("/mutate");
            s
        });
        assert!(hook["timeoutSeconds"].as_u64().unwrap() > request_timeout);
        // Pod CREATE only: an UPDATE cannot add a container.
        assert_eq!(
            hook["rules"],
            json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}])
        );
        // Our own namespace and kube-system are never injected.
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["kube-system", NAMESPACE])
        );
    }
    let selector = |i: usize, at: &str| hooks[i][at]["matchExpressions"].clone();
    assert_eq!(
        selector(0, "objectSelector"),
        json!([{"key": "guardrail.dev/inject", "operator": "In", "values": ["true"]}])
    );
    assert_eq!(
        selector(1, "namespaceSelector")[1],
        json!({"key": "guardrail.dev/inject", "operator": "In", "values": ["enabled"]})
    );
    assert_eq!(
        selector(1, "objectSelector"),
        json!([{"key": "guardrail.dev/inject", "operator": "NotIn", "values": ["true", "false"]}])
    );
    let single = render(json!({"injection": {"enabled": true, "namespaceSelector": false}}));
    let hooks = single.one("MutatingWebhookConfiguration")["webhooks"].clone();
    assert_eq!(hooks.as_array().unwrap().len(), 1);

    // The rendered config injects the chart's image, and the webhook accepts it.
    let dir = tempfile::tempdir().unwrap();
    write_config(&rendered, dir.path());
    let pod =
        guardrail_e2e::webhook::workspace_root().join("webhook/tests/inject/knative-http.yaml");
    let output = Command::new(bin("guardrail-webhook"))
        .arg("inject")
        .arg("--config")
        .arg(dir.path().join("config/config.yaml"))
        .arg(&pod)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let image = format!(
        "ghcr.io/guardrail-dev/guardrail-sidecar@{}",
        guardrail_e2e::webhook::manifest("charts/guardrail/values.yaml")[0]["injection"]["image"]
            ["digest"]
            .as_str()
            .unwrap()
    );
    assert!(text.contains(&image), "{text}");
}

#[test]
fn self_managed_rbac_is_limited_to_our_secret_and_our_webhook_configuration() {
    let rendered = render(json!({}));
    let flags = rendered.flags();
    let vwc_name = rendered.one("ValidatingWebhookConfiguration")["metadata"]["name"].clone();
    assert_eq!(json!(flags["--manage-webhook-configurations"]), vwc_name);
    assert!(
        rendered.one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
            .get("caBundle")
            .is_none(),
        "the chart must not own the caBundle the webhook writes"
    );

    let secret = rendered.one("Secret");
    assert_eq!(secret["metadata"]["name"], json!(flags["--secret-name"]));
    assert!(
        secret.get("data").is_none(),
        "upgrades must not overwrite the certificates"
    );

    let role = rendered.one("Role");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [flags["--secret-name"]], "verbs": ["get", "update"]}])
    );
    let cluster_role = rendered.one("ClusterRole");
    assert_eq!(
        cluster_role["rules"],
        json!([{"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"], "resourceNames": [vwc_name], "verbs": ["get", "update"]}])
    );
    let account =
        rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"].clone();
    for binding in [
        rendered.one("RoleBinding"),
        rendered.one("ClusterRoleBinding"),
    ] {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}])
        );
    }

    // Without the chart-made Secret, the webhook must be able to create it.
    let rendered = render(json!({"tls": {"selfManaged": {"createSecret": false}}}));
    assert!(rendered.get("Secret").is_empty());
    assert_eq!(rendered.one("Role")["rules"][1]["verbs"], json!(["create"]));
}

#[test]
fn secret_mode_mounts_the_users_secret_and_grants_no_api_access() {
    let rendered = render(secret_mode());
    assert!(rendered.get("Role").is_empty() && rendered.get("ClusterRole").is_empty());
    let vwc = rendered.one("ValidatingWebhookConfiguration");
    assert_eq!(vwc["webhooks"][0]["clientConfig"]["caBundle"], "Q0EK");
    let flags = rendered.flags();
    assert!(!flags.contains_key("--manage-webhook-configurations"));
    assert_eq!(flags["--tls-cert"], "/etc/guardrail/tls/tls.crt");
    let pod = rendered.one("Deployment")["spec"]["template"]["spec"].clone();
    assert_eq!(pod["automountServiceAccountToken"], false);
    let tls = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume")
        .clone();
    assert_eq!(tls["secret"]["secretName"], "guardrail-serving");

    let rendered = render(
        json!({"tls": {"mode": "secret", "secret": {"name": "s", "certManagerInjectFrom": "guardrail-system/guardrail"}}}),
    );
    let vwc = rendered.one("ValidatingWebhookConfiguration");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "guardrail-system/guardrail"
    );
}

#[test]
fn optional_resources_match_what_they_point_at() {
    let rendered = render(all_options());
    let service = rendered.one("Service");
    let monitor = rendered.one("ServiceMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    let port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| &p["name"] == port));

    let policy = rendered.one("NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

    // The sidecar's Role is exactly the one docs/guardrails.md documents.
    let sidecar = rendered
        .get("Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "ml")
        .expect("sidecar Role in ml");
    assert_eq!(
        sidecar["rules"],
        json!([
            {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get", "patch"]},
            {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
        ])
    );
    // Listing the Services limits the traffic patches to them (resourceNames).
    let locked = rendered
        .get("Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "ml-locked")
        .expect("sidecar Role in ml-locked");
    assert_eq!(
        locked["rules"][0],
        json!({"apiGroups": ["serving.knative.dev"], "resources": ["services"], "resourceNames": ["iris-predictor"], "verbs": ["get", "patch"]})
    );
    assert_eq!(
        locked["rules"][1],
        json!({"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "resourceNames": ["iris"], "verbs": ["get", "patch"]})
    );
    let rest = |role: &serde_json::Value| role["rules"].as_array().expect("rules")[2..].to_vec();
    assert_eq!(rest(&locked), rest(&sidecar));
    let flags = rendered.flags();
    assert_eq!(
        flags["--registry-auth"],
        "/etc/guardrail/registry-auth/config.json"
    );
}

#[test]
fn every_rendered_flag_exists_in_the_binary() {
    let help = serve_help();
    let cases = [
        ("default", json!({})),
        ("secret", secret_mode()),
        ("all", all_options()),
    ];
    for ((name, _), rendered) in cases.iter().zip(render_all(&cases)) {
        assert!(rendered.error.is_none(), "{name}: {:?}", rendered.error);
        for flag in rendered.flags().keys() {
            assert!(
                help.contains(&format!("{flag} <")),
                "{name}: the chart passes {flag}, which `guardrail-webhook serve` does not have"
            );
        }
    }
}

#[test]
fn the_rendered_deployment_passes_our_own_check() {
    let strict = json!({"config": {"policies": {"resources": {"mode": "enforce"}}}});
    let cases = [
        ("default", json!({})),
        ("secret", secret_mode()),
        ("strict", strict),
    ];
    for ((name, _), rendered) in cases.iter().zip(render_all(&cases)) {
        assert!(rendered.error.is_none(), "{name}: {:?}", rendered.error);
        let (code, report) = check_rendered(&rendered);
        assert_eq!(code, 0, "{name}: {report:#}");
        assert_eq!(report[0]["kind"], "Deployment");
        assert_eq!(report[0]["allowed"], true, "{name}: {report:#}");
    }
    // The digest is what makes it pass: a tag-only image is denied by the same check.
    let (code, report) = check_rendered(&render(json!({"image": {"digest": ""}})));
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report[0]["violations"][0]["policy"], "digest");
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    let cases = [
        (
            "failurePolicy",
            json!({"webhook": {"failurePolicy": "Maybe"}}),
        ),
        (
            "webhook.timeoutSeconds",
            json!({"webhook": {"timeoutSeconds": 8}}),
        ),
        (
            "/webhook/timeoutSeconds",
            json!({"webhook": {"timeoutSeconds": 31}}),
        ),
        (
            "tls.secret.caBundle",
            json!({"tls": {"mode": "secret", "secret": {"name": "s"}}}),
        ),
        (
            "tls.secret.name",
            json!({"tls": {"mode": "secret", "secret": {"caBundle": "Q0EK"}}}),
        ),
        ("/image/digest", json!({"image": {"digest": "sha256:ABC"}})),
        (
            "terminationGracePeriodSeconds",
            json!({"terminationGracePeriodSeconds": 20}),
        ),
        ("/replicaCount", json!({"replicaCount": 0})),
        ("unknownValue", json!({"unknownValue": true})),
        (
            "sidecarRBAC",
            json!({"sidecarRBAC": {"enabled": true, "bindings": [{"namespace": "ml"}]}}),
        ),
    ];
    for ((needle, values), rendered) in cases.iter().zip(render_all(&cases)) {
        let error = rendered
            .error
            .unwrap_or_else(|| panic!("{values} was accepted"));
        assert!(
            error.contains(needle),
            "{values}: the error does not name {needle}: {error}"
        );
    }
}

#[test]
fn the_rendered_secret_mode_arguments_start_the_real_server() {
    let rendered = render(secret_mode());
    let dir = tempfile::tempdir().expect("tempdir");
    // The chart's Service name and namespace: the certificate must cover them (the
    // rendered --service-name/--service-namespace make serve check its SANs).
    let service = rendered.one("Service")["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let generated = Command::new(bin("guardrail-webhook"))
        .args([
            "certs",
            "generate",
            "--service",
            &service,
            "--namespace",
            NAMESPACE,
            "--out",
        ])
        .arg(dir.path().join("tls"))
        .output()
        .expect("certs generate");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    write_config(&rendered, dir.path());
    let (mut server, _) = start_rendered(&rendered, dir.path(), &[]);
    let status = server
        .terminate(Duration::from_secs(25))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_tls_works_within_the_rendered_rbac() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rendered = render(json!({}));
    let mut options = kube_emulator::Options::default();
    options.namespaces.push(NAMESPACE.to_string());
    let emu = kube_emulator::Emulator::start(options)
        .await
        .expect("emulator");
    // What Helm creates and the webhook then works on: the empty Secret, the configuration.
    for template in ["secret.yaml", "validatingwebhookconfiguration.yaml"] {
        emu.apply_yaml(&rendered.manifests[&format!("guardrail/templates/{template}")])
            .unwrap_or_else(|e| panic!("{template}: {e}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(&rendered, dir.path());
    // In the pod, the in-cluster service account; here a kubeconfig (same kube::Client path).
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let extra = [format!("--kubeconfig={}", kubeconfig.display())];
    let (root, pod) = (dir.path().to_path_buf(), rendered.clone());
    let (mut server, args) =
        tokio::task::spawn_blocking(move || start_rendered(&pod, &root, &extra))
            .await
            .expect("start");

    let flags = rendered.flags();
    let secret = emu
        .get("secrets", NAMESPACE, &flags["--secret-name"])
        .expect("the chart's Secret");
    assert!(
        secret["data"]["tls.crt"].is_string(),
        "the webhook filled the chart's Secret"
    );
    let vwc = emu
        .get(
            "validatingwebhookconfigurations",
            "",
            &flags["--manage-webhook-configurations"],
        )
        .expect("the chart's configuration");
    let bundle = &vwc["webhooks"][0]["clientConfig"]["caBundle"];
    assert!(
        bundle.as_str().is_some_and(|b| !b.is_empty()),
        "caBundle written: {vwc}"
    );

    // Every API request the webhook made is allowed by the chart's Role and ClusterRole.
    let roles = [rendered.one("Role"), rendered.one("ClusterRole")];
    let requests: Vec<_> = emu
        .audit()
        .into_iter()
        .filter(|e| e.path.starts_with("/api"))
        .collect();
    assert!(
        !requests.is_empty(),
        "the webhook made no API request ({args:?})"
    );
    for request in &requests {
        assert!(
            rbac_allows(&roles, &request.verb, &request.path),
            "the chart's RBAC does not allow {} {}",
            request.verb,
            request.path
        );
    }
    let status = server
        .terminate(Duration::from_secs(25))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}
