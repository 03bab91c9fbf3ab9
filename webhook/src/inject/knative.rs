//! Knative (and KServe serverless) pods: queue-proxy → sidecar → what `USER_PORT` was.

use serde_json::{json, Value};

use super::{
    choose_ports, container::Layout, declared_ports, patch::Ops, Injection, InjectionConfig,
    Outcome,
};

pub const USER_PORT: &str = "USER_PORT";
pub const READINESS_ENV: &str = "SERVING_READINESS_PROBE";
const MULTI_PROBES_ENV: &str = "ENABLE_MULTI_CONTAINER_PROBES";
/// queue-proxy's admin port and drain path: a preStop on it returns once queue-proxy
/// has drained (what Knative gives the user container).
const QUEUE_ADMIN_PORT: u16 = 8022;
const DRAIN_PATH: &str = "/wait-for-drain";
/// Probe fields that say when and how often, kept when the handler is replaced.
const TIMING_FIELDS: &[&str] = &[
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
];
/// The sidecar's endpoint that is ready only when the model's own probe passes.
pub const READY_PATH: &str = "/readyz";
/// Env var carrying the user container's original readiness probe to the sidecar.
pub const UPSTREAM_PROBE_ENV: &str = "GUARDRAIL_UPSTREAM_PROBE";
/// Env var carrying the upstream URL to the sidecar.
pub const UPSTREAM_ENV: &str = "GUARDRAIL_UPSTREAM";
/// Name of the sidecar's proxy port in Knative pods.
pub const PROXY_PORT_NAME: &str = "guardrail-proxy";

/// A plain env value (not `valueFrom`).
pub fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_str()
}

fn user_port(queue_proxy: &Value) -> Result<u16, String> {
    let raw = env_value(queue_proxy, USER_PORT);
    raw.and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            format!(
                "queue-proxy's {USER_PORT} is {}: cannot tell where it forwards",
                raw.map_or("missing".into(), |r| format!("{r:?}, not a port"))
            )
        })
}

/// `SERVING_READINESS_PROBE`: one probe, or a list with `ENABLE_MULTI_CONTAINER_PROBES`.
enum Probes {
    Absent,
    Single(Value),
    Many(Vec<Value>),
}

fn parse_probes(raw: Option<&str>) -> Result<Probes, String> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Ok(Probes::Absent);
    }
    let bad = |e: &dyn std::fmt::Display| {
        format!("queue-proxy's {READINESS_ENV} is not a probe or a list of probes: {e}")
    };
    match serde_json::from_str::<Value>(raw).map_err(|e| bad(&e))? {
        Value::Array(list) if list.iter().all(|p| p.is_object() || p.is_null()) => {
            Ok(Probes::Many(list))
        }
        probe @ Value::Object(_) => Ok(Probes::Single(probe)),
        other => Err(bad(&format!("found {other}"))),
    }
}

/// The port a probe entry targets (a number; Knative resolves names before encoding).
pub fn probe_port(probe: &Value) -> Option<u16> {
    let port = ["httpGet", "tcpSocket", "grpc"]
        .iter()
        .find_map(|h| probe.get(h)?.get("port"))?;
    match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The probe entry queue-proxy will send to the sidecar instead of the model.
fn our_entry(admin_port: u16, original: Option<&Value>) -> Value {
    let mut entry = json!({
        "httpGet": {"host": "127.0.0.1", "port": admin_port, "path": READY_PATH, "scheme": "HTTP"}
    });
    if let Some(original) = original {
        for field in TIMING_FIELDS {
            if let Some(v) = original.get(field) {
                entry[field] = v.clone();
            }
        }
    }
    entry
}

/// Checks that the sidecar can run the user container's probe itself.
fn runnable(probe: &Value) -> Result<(), String> {
    let scheme = probe
        .get("httpGet")
        .and_then(|h| h.get("scheme"))
        .and_then(Value::as_str);
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case("HTTP")) {
        return Err(format!(
            "the user container's readiness probe uses scheme {}, which the sidecar does not \
             probe (use an HTTP readiness endpoint)",
            scheme.unwrap_or_default()
        ));
    }
    if !["httpGet", "tcpSocket", "grpc"]
        .iter()
        .any(|h| probe.get(h).is_some())
    {
        return Err(format!(
            "queue-proxy's {READINESS_ENV} entry for the user container has no httpGet, \
             tcpSocket or grpc handler"
        ));
    }
    Ok(())
}

/// Plans the wiring of a Knative pod whose queue-proxy is `containers[qp]`.
pub fn layout(
    spec: &Value,
    labels: Option<&serde_json::Map<String, Value>>,
    qp: usize,
    config: &InjectionConfig,
    ops: &mut Ops,
) -> Result<(Layout, Vec<String>), String> {
    let queue_proxy = &spec["containers"][qp];
    let user_port = user_port(queue_proxy)?;
    let probes = parse_probes(env_value(queue_proxy, READINESS_ENV))?;
    let mut used = declared_ports(spec);
    used.push(user_port);
    let entries: &[Value] = match &probes {
        Probes::Absent => &[],
        Probes::Single(p) => std::slice::from_ref(p),
        Probes::Many(list) => list,
    };
    used.extend(entries.iter().filter_map(probe_port));
    let (proxy_port, admin_port) = choose_ports(config, used)?;

    // The user container's entry: the one on the port queue-proxy forwarded to, else
    // the first (Knative encodes the user container's probe first).
    let index = entries
        .iter()
        .position(|p| probe_port(p) == Some(user_port))
        .or((!entries.is_empty()).then_some(0));
    let original = index.map(|i| entries[i].clone()).filter(|p| !p.is_null());
    if let Some(original) = &original {
        runnable(original)?;
    }
    let ours = our_entry(admin_port, original.as_ref());
    let multi = env_value(queue_proxy, MULTI_PROBES_ENV) == Some("true");
    let rewritten = match probes {
        Probes::Many(mut list) => {
            match index {
                Some(i) => list[i] = ours,
                None => list.push(ours),
            }
            Value::Array(list)
        }
        Probes::Absent if multi => Value::Array(vec![ours]),
        Probes::Absent | Probes::Single(_) => ours,
    };

    let qp_path = ["spec", "containers", &qp.to_string()].map(String::from);
    let qp_path: Vec<&str> = qp_path.iter().map(String::as_str).collect();
    let env = queue_proxy.get("env");
    ops.set_env(&qp_path, env, USER_PORT, proxy_port.to_string());
    ops.set_env(&qp_path, env, READINESS_ENV, rewritten.to_string());

    // What Knative tells queue-proxy about the revision (or labels the pod with), under
    // the names the sidecar reads (the same ones Knative gives the user container).
    let identity = [
        (
            "K_REVISION",
            "SERVING_REVISION",
            "serving.knative.dev/revision",
        ),
        (
            "K_CONFIGURATION",
            "SERVING_CONFIGURATION",
            "serving.knative.dev/configuration",
        ),
        (
            "K_SERVICE",
            "SERVING_SERVICE",
            "serving.knative.dev/service",
        ),
    ]
    .iter()
    .filter_map(|(ours, env, label)| {
        let from_label = || labels?.get(*label)?.as_str();
        let value = env_value(queue_proxy, env)
            .filter(|v| !v.is_empty())
            .or_else(from_label)
            .filter(|v| !v.is_empty())?;
        Some((*ours, value.to_string()))
    })
    .collect();
    let layout = Layout {
        proxy_port,
        proxy_port_name: PROXY_PORT_NAME.into(),
        admin_port,
        upstream_port: user_port,
        upstream_probe: original.as_ref().map(Value::to_string),
        identity,
        pre_stop: Some(drain_pre_stop(spec)),
    };
    Ok((layout, Vec::new()))
}

/// The user container's preStop that waits for queue-proxy's drain, or Knative's.
fn drain_pre_stop(spec: &Value) -> Value {
    super::list(spec, "containers")
        .iter()
        .filter_map(|c| c.pointer("/lifecycle/preStop"))
        .find(|p| p.pointer("/httpGet/path").and_then(Value::as_str) == Some(DRAIN_PATH))
        .cloned()
        .unwrap_or_else(|| json!({"httpGet": {"port": QUEUE_ADMIN_PORT, "path": DRAIN_PATH}}))
}

/// A pod that already has our container (`list[index]`): when another webhook moved
/// `USER_PORT` after us, our upstream follows it and `USER_PORT` comes back to us.
pub fn follow(
    spec: &Value,
    base: &[&str],
    qp: usize,
    ours: (&str, usize),
    container: &Value,
) -> Result<Injection, String> {
    let user_port = user_port(&spec["containers"][qp])?;
    let proxy_port = super::list(container, "ports")
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(PROXY_PORT_NAME))
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok());
    let Some(proxy_port) = proxy_port.filter(|p| *p != user_port) else {
        return Ok(Injection::nothing(Outcome::Unchanged));
    };
    let mut ops = Ops::new(base);
    let index = ours.1.to_string();
    let ours_path = ["spec", ours.0, &index];
    ops.set_env(
        &ours_path,
        container.get("env"),
        UPSTREAM_ENV,
        format!("http://127.0.0.1:{user_port}"),
    );
    let qp_index = qp.to_string();
    let queue_proxy = &spec["containers"][qp];
    ops.set_env(
        &["spec", "containers", &qp_index],
        queue_proxy.get("env"),
        USER_PORT,
        proxy_port.to_string(),
    );
    Ok(Injection {
        outcome: Outcome::Updated,
        patch: ops.into_patch(),
        warnings: Vec::new(),
    })
}
