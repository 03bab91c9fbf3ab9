//! Helpers of the Helm chart tests: rendering with the real Helm engine, linting,
//! kubernetes-validate, starting the server with the rendered arguments, and an RBAC
//! evaluator for the rendered Roles.

// Shared by chart.rs and injection_chain.rs; each uses a different part.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guardrail_e2e::{bins::bin, process::ChildGuard, webhook::workspace_root};
use serde_json::{json, Value};

pub const NAMESPACE: &str = "guardrail-system";
/// The chart's floor (`kubeVersion` in Chart.yaml) and kubernetes-validate's newest.
const KUBE_VERSIONS: [&str; 2] = ["1.27.0", "1.37.0"];

/// A tool from the chart venv that tests/setup/chart.sh installs.
pub fn tool(env: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is set");
        Path::new(&home)
            .join(".cache/guardrail/chart-venv/bin")
            .join(name)
    });
    assert!(
        path.exists(),
        "{} is missing ({env}): run tests/run.sh (tests/setup/chart.sh installs helm-python-sdk and kubernetes-validate)",
        path.display()
    );
    path
}

/// One chart rendering: Helm's lint report and the manifests, or Helm's error.
#[derive(Clone)]
pub struct Rendered {
    pub lint: Value,
    pub manifests: BTreeMap<String, String>,
    pub error: Option<String>,
}

impl Rendered {
    /// Every object, parsed from the rendered YAML (NOTES.txt left out).
    pub fn objects(&self) -> Vec<Value> {
        self.manifests
            .iter()
            .filter(|(path, _)| path.ends_with(".yaml"))
            .flat_map(|(path, text)| {
                serde_saphyr::from_multiple::<Value>(text)
                    .unwrap_or_else(|e| panic!("{path} is not YAML: {e}\n{text}"))
            })
            .filter(|object| !object.is_null())
            .collect()
    }

    pub fn kinds(&self) -> BTreeSet<String> {
        self.objects()
            .iter()
            .map(|o| o["kind"].as_str().expect("kind").to_string())
            .collect()
    }

    pub fn get(&self, kind: &str) -> Vec<Value> {
        self.objects()
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    pub fn one(&self, kind: &str) -> Value {
        let mut found = self.get(kind);
        assert_eq!(found.len(), 1, "expected one {kind}, got {found:?}");
        found.remove(0)
    }

    /// The ConfigMap holding the webhook's config (the dashboard has its own).
    pub fn config_map(&self) -> Value {
        let mut found: Vec<Value> = self
            .get("ConfigMap")
            .into_iter()
            .filter(|m| m["data"].get("config.yaml").is_some())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one config ConfigMap, got {found:?}"
        );
        found.remove(0)
    }

    pub fn container(&self) -> Value {
        self.one("Deployment")["spec"]["template"]["spec"]["containers"][0].clone()
    }

    /// The container's `--flag=value` arguments after `serve`.
    pub fn flags(&self) -> BTreeMap<String, String> {
        let container = self.container();
        let args = container["args"].as_array().expect("args");
        assert_eq!(args[0], "serve", "the container runs `serve`: {args:?}");
        args[1..]
            .iter()
            .map(|arg| {
                let arg = arg.as_str().expect("string arg");
                let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
                (flag.to_string(), value.to_string())
            })
            .collect()
    }
}

/// Renders the chart once per case (`values` overrides) in one Python process.
pub fn render_all(cases: &[(&str, Value)]) -> Vec<Rendered> {
    let root = workspace_root();
    let input: Vec<Value> = cases
        .iter()
        .map(|(name, values)| json!({"name": name, "namespace": NAMESPACE, "values": values}))
        .collect();
    let mut child = Command::new(tool("GUARDRAIL_CHART_PYTHON", "python"))
        .arg(root.join("charts/tools/helm.py"))
        .arg(root.join("charts/guardrail"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the chart renderer");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(serde_json::to_string(&input).expect("json").as_bytes())
        .expect("write cases");
    drop(stdin);
    let output = child.wait_with_output().expect("renderer output");
    assert!(
        output.status.success(),
        "charts/tools/helm.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("renderer JSON");
    results
        .into_iter()
        .map(|r| Rendered {
            lint: r["lint"].clone(),
            manifests: serde_json::from_value(r["manifests"].clone()).unwrap_or_default(),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect()
}

pub fn render(values: Value) -> Rendered {
    let rendered = render_all(&[("case", values)]).remove(0);
    if let Some(error) = &rendered.error {
        panic!("helm template failed: {error}");
    }
    rendered
}

/// Lint must report no warning or error (severity 2 and 3).
pub fn assert_lint_clean(rendered: &Rendered) {
    let problems: Vec<&Value> = rendered.lint["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .collect();
    assert!(problems.is_empty(), "helm lint: {problems:?}");
}

/// Writes every rendered manifest and runs kubernetes-validate --strict on all of them.
pub fn assert_valid_kubernetes(rendered: &Rendered) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (path, text) in &rendered.manifests {
        if path.ends_with(".yaml") && !text.trim().is_empty() {
            let file = dir.path().join(path.replace('/', "_"));
            std::fs::write(&file, text).expect("write manifest");
            files.push(file);
        }
    }
    for version in KUBE_VERSIONS {
        let output = Command::new(tool("GUARDRAIL_KUBERNETES_VALIDATE", "kubernetes-validate"))
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubernetes {version}:\n{report}");
        // A kind it has no schema for (our Prometheus Operator and cert-manager objects,
        // checked against their CRDs by `assert_valid_against_crds`) is only a warning; everything built
        // in must really have been checked.
        for line in report.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                [
                    "ServiceMonitor",
                    "PodMonitor",
                    "PrometheusRule",
                    "Issuer",
                    "Certificate"
                ]
                .iter()
                .any(|k| line.contains(&format!("kind {k}"))),
                "{line}"
            );
        }
    }
}

pub fn serve_help() -> String {
    let output = Command::new(bin("guardrail-webhook"))
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    assert!(output.status.success(), "serve --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn all_options() -> Value {
    json!({
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": true, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]},
        "sidecarRBAC": {"enabled": true, "bindings": [
            {"namespace": "ml", "serviceAccounts": ["default", "model"]},
            {"namespace": "ml-locked", "serviceAccounts": ["model"], "services": ["iris-predictor"], "inferenceServices": ["iris"]},
        ]},
        "registryAuth": {"secretName": "regcred"},
        "podMonitor": {"enabled": true, "namespaces": ["ml"], "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": true, "labels": {"release": "prometheus"}},
        "dashboard": {"enabled": true, "namespace": "monitoring", "annotations": {"grafana_folder": "Guardrail"}},
        "injection": {"enabled": true, "listenPort": 8091, "failurePolicy": "Ignore"},
        "signatureKeys": {"configMap": "cosign-keys"},
        "server": {"extraArgs": ["--cert-expiry-warning-days=14"]},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "podAntiAffinity": "hard",
        "priorityClassName": "system-cluster-critical",
        "config": {"policies": {"resources": {"mode": "enforce"}}, "signatures": {"rules": [
            {"images": ["registry.example.com/models/**"], "keys": [{"file": "/etc/guardrail/keys/release.pub"}]}
        ]}}
    })
}

pub fn secret_mode() -> Value {
    json!({"tls": {"mode": "secret", "secret": {"name": "guardrail-serving", "caBundle": "Q0EK"}}})
}

/// Writes the rendered Deployment and the config from the rendered ConfigMap, runs
/// `guardrail-webhook check --config` on them; returns (exit code, JSON report).
pub fn check_rendered(rendered: &Rendered) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rendered.config_map()["data"]["config.yaml"].clone();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config.as_str().expect("config.yaml")).expect("write config");
    let deployment_path = dir.path().join("deployment.yaml");
    std::fs::write(
        &deployment_path,
        &rendered.manifests["guardrail/templates/deployment.yaml"],
    )
    .expect("write deployment");
    let output = Command::new(bin("guardrail-webhook"))
        .arg("check")
        .arg("--config")
        .arg(&config_path)
        .args(["--output", "json"])
        .arg(&deployment_path)
        .output()
        .expect("run check");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit code"), report)
}

/// The rendered ConfigMap's config.yaml where the pod would see it, under `root`.
pub fn write_config(rendered: &Rendered, root: &Path) {
    std::fs::create_dir(root.join("config")).expect("config dir");
    let config = rendered.config_map()["data"]["config.yaml"].clone();
    std::fs::write(
        root.join("config/config.yaml"),
        config.as_str().expect("config.yaml"),
    )
    .expect("write config");
}

/// Starts `guardrail-webhook` with the container's rendered arguments, the pod's paths
/// moved under `root` and loopback ports chosen by the kernel; waits for `/readyz` 200.
pub fn start_rendered(
    rendered: &Rendered,
    root: &Path,
    extra: &[String],
) -> (ChildGuard, Vec<String>) {
    let (server, args, _) = start_rendered_at(rendered, root, extra);
    (server, args)
}

/// [`start_rendered`], also returning the HTTPS address the server listens on.
pub fn start_rendered_at(
    rendered: &Rendered,
    root: &Path,
    extra: &[String],
) -> (ChildGuard, Vec<String>, std::net::SocketAddr) {
    let root = root.to_str().expect("utf-8 temp dir");
    let args: Vec<String> = rendered.container()["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").replace("/etc/guardrail", root))
        .map(|a| match a.split_once('=') {
            Some((flag @ ("--listen" | "--metrics-listen"), _)) => format!("{flag}=127.0.0.1:0"),
            _ => a,
        })
        .chain(extra.iter().cloned())
        .collect();
    let mut server = ChildGuard::spawn(
        "guardrail-webhook",
        Command::new(bin("guardrail-webhook"))
            .args(&args)
            .stdout(Stdio::piped()),
    );
    let stdout = server.child.stdout.take().expect("stdout");
    let mut https = None;
    let metrics = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            if let Some(addr) = line.strip_prefix("listening on https://") {
                https = addr.parse().ok();
            }
            line.strip_prefix("metrics on http://").map(str::to_string)
        })
        .unwrap_or_else(|| panic!("serve {args:?} exited before listening"));
    let https = https.unwrap_or_else(|| panic!("serve {args:?} printed no HTTPS address"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&metrics, "/readyz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200 for {args:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, args, https)
}

/// GET `path` on a plain HTTP address; the status code, or None if it is not answering.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The (group, resource) pairs a webhook's `rules` route; asserts each rule covers
/// CREATE and UPDATE on every version.
pub fn routed(rules: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]), "{rule}");
        assert_eq!(rule["apiVersions"], json!(["*"]), "{rule}");
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                out.insert((
                    group.as_str().unwrap_or_default().into(),
                    resource.as_str().unwrap_or_default().into(),
                ));
            }
        }
    }
    out
}

/// Whether a namespaced Role or a ClusterRole rule allows `verb` on a request path
/// (`/api/v1/namespaces/NS/secrets/NAME`, `/apis/GROUP/VERSION/RESOURCE/NAME`).
pub fn rbac_allows(roles: &[Value], verb: &str, path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return false,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let (resource, name) = match rest {
        [resource] => (*resource, None),
        [resource, name] => (*resource, Some(*name)),
        _ => return false,
    };
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == item || v == "*"))
    };
    roles.iter().any(|role| {
        let in_scope = role["kind"] == "ClusterRole"
            || namespace.is_some_and(|ns| role["metadata"]["namespace"] == ns);
        in_scope
            && role["rules"].as_array().expect("rules").iter().any(|rule| {
                has(&rule["apiGroups"], group)
                    && has(&rule["resources"], resource)
                    && has(&rule["verbs"], verb)
                    && match (&rule["resourceNames"], name) {
                        (Value::Null, _) => true,
                        (names, Some(name)) => has(names, name),
                        (_, None) => false,
                    }
            })
    })
}

/// Validates the rendered objects of CRD kinds against `crds` (files under
/// `../shared/fixtures`) with `charts/tools/crd_validate.py` (jsonschema, unknown fields
/// refused as `kubectl` with strict field validation); returns how many were checked.
pub fn assert_valid_against_crds(rendered: &Rendered, kinds: &[&str], crds: &[&str]) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects: Vec<Value> = rendered
        .objects()
        .into_iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or("")))
        .collect();
    assert!(!objects.is_empty(), "nothing of {kinds:?} rendered");
    let file = dir.path().join("objects.yaml");
    let text: Vec<String> = objects
        .iter()
        .map(|o| serde_saphyr::to_string(o).expect("yaml"))
        .collect();
    std::fs::write(&file, text.join("---\n")).expect("write objects");
    let root = guardrail_e2e::webhook::workspace_root();
    let mut cmd = Command::new(tool("GUARDRAIL_CHART_PYTHON", "python"));
    cmd.arg(root.join("charts/tools/crd_validate.py"));
    for crd in crds {
        cmd.arg("--crd")
            .arg(root.join("../shared/fixtures").join(crd));
    }
    let output = cmd.arg(&file).output().expect("run crd_validate.py");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    objects.len()
}
