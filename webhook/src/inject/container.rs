//! The injected container, and how plain pods route through it.

use serde_json::{json, Map, Value};

use super::{
    choose_ports, declared_ports, free_port,
    knative::{READY_PATH, UPSTREAM_ENV, UPSTREAM_PROBE_ENV},
    list,
    patch::Ops,
    InjectionConfig, LISTEN_PORT_ANNOTATION, SERVING_PORT_ANNOTATION, TOKEN_PATH,
    UPSTREAM_PORT_ANNOTATION,
};

/// Name of the admin port: the judge finds its peers' summaries by it.
pub const ADMIN_PORT_NAME: &str = "guardrail-admin";
/// Env var that turns the guardrails off (measure only).
pub const MEASURE_ONLY_ENV: &str = "GUARDRAIL_MEASURE_ONLY";
/// Env var carrying the sidecar's config text.
pub const SIDECAR_CONFIG_ENV: &str = "GUARDRAIL_SIDECAR_CONFIG";
/// Mesh proxies whose ports are never the serving port.
const MESH_PROXIES: &[&str] = &["istio-proxy", "linkerd-proxy"];

/// How the sidecar is wired into one pod.
#[derive(Debug, Clone)]
pub struct Layout {
    pub proxy_port: u16,
    /// `guardrail-proxy`, or the serving port name taken over in a plain pod.
    pub proxy_port_name: String,
    pub admin_port: u16,
    /// Where the sidecar forwards (on 127.0.0.1).
    pub upstream_port: u16,
    /// The user container's readiness probe (JSON) the sidecar's `/readyz` runs.
    pub upstream_probe: Option<String>,
    /// Env vars naming the revision.
    pub identity: Vec<(&'static str, String)>,
    pub pre_stop: Option<Value>,
}

pub struct Sidecar<'a> {
    pub config: &'a InjectionConfig,
    pub image: &'a str,
    pub layout: &'a Layout,
    /// The token volume mount to copy, if any.
    pub token: Option<Value>,
    pub measure_only: bool,
    pub native: bool,
    pub warmup_annotation: &'a str,
    /// `injection.sidecarConfig`, as the sidecar reads it.
    pub sidecar_config: Option<&'a str>,
}

impl Sidecar<'_> {
    pub fn render(&self) -> Value {
        let l = self.layout;
        let plain = |name: &str, value: String| json!({"name": name, "value": value});
        let field = |name: &str, path: String| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let mut env = vec![plain(
            UPSTREAM_ENV,
            format!("http://127.0.0.1:{}", l.upstream_port),
        )];
        env.extend(l.identity.iter().map(|(k, v)| plain(k, v.clone())));
        env.push(field("POD_NAME", "metadata.name".into()));
        env.push(field("POD_NAMESPACE", "metadata.namespace".into()));
        // Empty when the pod has no such annotation, which the sidecar reads as none.
        env.push(field(
            "GUARDRAIL_WARMUP_SECONDS",
            format!("metadata.annotations['{}']", self.warmup_annotation),
        ));
        if let Some(probe) = &l.upstream_probe {
            env.push(plain(UPSTREAM_PROBE_ENV, probe.clone()));
        }
        if self.measure_only {
            env.push(plain(MEASURE_ONLY_ENV, "true".into()));
        }
        if let Some(text) = self.sidecar_config {
            env.push(plain(SIDECAR_CONFIG_ENV, text.to_string()));
        }
        let admin_get = |path: &str| json!({"httpGet": {"path": path, "port": l.admin_port}});
        let mut readiness = admin_get(READY_PATH);
        readiness["periodSeconds"] = json!(5);
        let mut liveness = admin_get("/healthz");
        liveness["periodSeconds"] = json!(10);
        liveness["failureThreshold"] = json!(3);
        let resources = &self.config.resources;
        let quantities = |m: &std::collections::BTreeMap<String, String>| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut container = json!({
            "name": self.config.container_name,
            "image": self.image,
            "args": [
                format!("--listen=0.0.0.0:{}", l.proxy_port),
                format!("--admin-listen=0.0.0.0:{}", l.admin_port),
            ],
            "env": env,
            "ports": [
                {"name": l.proxy_port_name, "containerPort": l.proxy_port, "protocol": "TCP"},
                {"name": ADMIN_PORT_NAME, "containerPort": l.admin_port, "protocol": "TCP"},
            ],
            "readinessProbe": readiness,
            "livenessProbe": liveness,
            "resources": {"requests": quantities(&resources.requests), "limits": quantities(&resources.limits)},
            // queue-proxy's hardening.
            "securityContext": {
                "runAsNonRoot": true,
                "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationMessagePolicy": "FallbackToLogsOnError",
        });
        if let Some(token) = &self.token {
            container["volumeMounts"] = json!([token]);
        }
        if self.native {
            // Kubernetes stops native sidecars after the main containers: no preStop.
            container["restartPolicy"] = json!("Always");
        } else if let Some(pre_stop) = &l.pre_stop {
            container["lifecycle"] = json!({"preStop": pre_stop});
        }
        container
    }
}

/// The API token mount of the pod's other containers, to copy into ours.
pub fn token_mount(containers: &[Value]) -> Option<Value> {
    containers
        .iter()
        .flat_map(|c| list(c, "volumeMounts"))
        .find(|m| {
            m.get("mountPath")
                .and_then(Value::as_str)
                .is_some_and(|p| p.trim_end_matches('/') == TOKEN_PATH)
        })
        .cloned()
}

/// The ports of `guardrail.dev/listen-port` and `guardrail.dev/upstream-port`, when the
/// pod has both (one alone is an error: it says what the other should be).
pub fn explicit_ports(pod: &Value) -> Result<Option<(u16, u16)>, String> {
    let annotation = |key: &str| -> Result<Option<u16>, String> {
        let Some(raw) = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        raw.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| format!("annotation {key}: {raw:?} is not a port number"))
    };
    match (
        annotation(LISTEN_PORT_ANNOTATION)?,
        annotation(UPSTREAM_PORT_ANNOTATION)?,
    ) {
        (Some(listen), Some(upstream)) => Ok(Some((listen, upstream))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "annotate both {LISTEN_PORT_ANNOTATION} (where the sidecar listens) and \
             {UPSTREAM_PORT_ANNOTATION} (the model's port), or neither"
        )),
    }
}

/// A pod wired by its annotations: the sidecar on `listen`, forwarding to `upstream`.
pub fn explicit_layout(
    spec: &Value,
    listen: u16,
    upstream: u16,
    config: &InjectionConfig,
) -> Result<(Layout, Vec<String>), String> {
    let mut used = declared_ports(spec);
    if free_port(listen, &used) != Some(listen) {
        return Err(format!(
            "annotation {LISTEN_PORT_ANNOTATION}: port {listen} is taken or reserved in this pod"
        ));
    }
    used.extend([listen, upstream]);
    let admin = free_port(config.admin_port, &used).ok_or_else(|| {
        format!(
            "no free admin port above {} (set injection.adminPort to a free one)",
            config.admin_port
        )
    })?;
    let layout = Layout {
        proxy_port: listen,
        proxy_port_name: super::knative::PROXY_PORT_NAME.into(),
        admin_port: admin,
        upstream_port: upstream,
        upstream_probe: None,
        identity: Vec::new(),
        pre_stop: None,
    };
    Ok((layout, Vec::new()))
}

/// A pod without queue-proxy: the serving port's name moves to the sidecar, so a
/// Service targeting it by name sends traffic through us. Probes and hooks of the
/// model container that name the port get its number.
pub fn plain_layout(
    pod: &Value,
    spec: &Value,
    config: &InjectionConfig,
    ops: &mut Ops,
) -> Result<(Layout, Vec<String>), String> {
    let wanted = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SERVING_PORT_ANNOTATION))
        .and_then(Value::as_str);
    let containers = list(spec, "containers");
    let candidates = containers.iter().enumerate().filter(|(_, c)| {
        !MESH_PROXIES.contains(&c.get("name").and_then(Value::as_str).unwrap_or_default())
    });
    let mut found = None;
    'search: for (ci, c) in candidates {
        for (pi, p) in list(c, "ports").iter().enumerate() {
            let Some(name) = p.get("name").and_then(Value::as_str) else {
                continue;
            };
            let serving = match wanted {
                Some(w) => name == w,
                None => ["http", "h2c", "grpc"].iter().any(|s| name.starts_with(s)),
            };
            let number = p.get("containerPort").and_then(Value::as_u64);
            if let (true, Some(number)) = (serving, number.and_then(|n| u16::try_from(n).ok())) {
                found = Some((ci, pi, name.to_string(), number));
                break 'search;
            }
        }
    }
    let Some((ci, pi, name, number)) = found else {
        return Err(match wanted {
            Some(w) => {
                format!("annotation {SERVING_PORT_ANNOTATION}: {w:?} names no container port")
            }
            None => format!(
                "the pod has no queue-proxy and no named serving port (http…, h2c…, grpc…) \
                 to move to the sidecar, so no traffic would pass through it: name the model's \
                 port and target it by name from the Service, or annotate \
                 {SERVING_PORT_ANNOTATION}: <port name>"
            ),
        });
    };
    let (proxy_port, admin_port) = choose_ports(config, declared_ports(spec))?;
    let (ci_s, pi_s) = (ci.to_string(), pi.to_string());
    let model = ["spec", "containers", ci_s.as_str()];
    ops.remove(&[&model[..], &["ports", &pi_s, "name"]].concat());
    let handlers = [
        ["readinessProbe", ""],
        ["livenessProbe", ""],
        ["startupProbe", ""],
        ["lifecycle", "postStart"],
        ["lifecycle", "preStop"],
    ];
    for [outer, inner] in handlers {
        let mut at: Vec<&str> = vec![outer];
        if !inner.is_empty() {
            at.push(inner);
        }
        let Some(handler) = at.iter().try_fold(&containers[ci], |v, k| v.get(k)) else {
            continue;
        };
        for action in ["httpGet", "tcpSocket"] {
            if handler
                .get(action)
                .and_then(|a| a.get("port"))
                .and_then(Value::as_str)
                == Some(name.as_str())
            {
                let path = [&model[..], &at, &[action, "port"]].concat();
                ops.replace(&path, json!(number));
            }
        }
    }
    let layout = Layout {
        proxy_port,
        proxy_port_name: name,
        admin_port,
        upstream_port: number,
        upstream_probe: None,
        identity: Vec::new(),
        pre_stop: None,
    };
    Ok((layout, Vec::new()))
}
