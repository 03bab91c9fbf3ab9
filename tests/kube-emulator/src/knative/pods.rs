//! The Pod of a Revision, laid out as Knative's revision reconciler builds it
//! (`pkg/reconciler/revision/resources/deploy.go` and `queue.go` in knative/serving): the
//! user container gets `user-port`, `PORT`, `K_REVISION`/`K_CONFIGURATION`/`K_SERVICE`,
//! the `/wait-for-drain` preStop on queue-proxy's admin port; its HTTP, TCP or gRPC
//! readiness probe moves into queue-proxy's `SERVING_READINESS_PROBE` with
//! `applyReadinessProbeDefaults` (host 127.0.0.1, the probe's port or `USER_PORT`; exec
//! stays on the container and queue-proxy gets TCP); no probe is Knative's default TCP
//! probe. One pod per Revision (no autoscaling), created the way the ReplicaSet
//! controller does: through the API, so admission webhooks see it.

use serde_json::{json, Map, Value};

use crate::meta::{meta_str, random_suffix};

/// The cluster's queue-proxy (a release image, by digest).
pub const QUEUE_PROXY_IMAGE: &str = "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:00b109cf1123a591253cc534b17e5268eb8fc2fbb7d6772de7a55c135ef1282f";
const DEFAULT_USER_PORT: i64 = 8080;

fn port_of(probe: &Value) -> Option<i64> {
    ["httpGet", "tcpSocket", "grpc"]
        .iter()
        .find_map(|h| probe.get(h)?.get("port")?.as_i64())
        .filter(|p| *p != 0)
}

/// queue.go `applyReadinessProbeDefaults`.
fn queue_probe(probe: &Value, user_port: i64) -> Value {
    let mut p = probe.clone();
    let port = port_of(probe).unwrap_or(user_port);
    if p.get("httpGet").is_some() {
        p["httpGet"]["host"] = json!("127.0.0.1");
        p["httpGet"]["port"] = json!(port);
        if p["httpGet"].get("scheme").is_none() {
            p["httpGet"]["scheme"] = json!("HTTP");
        }
    } else if p.get("tcpSocket").is_some() {
        p["tcpSocket"] = json!({"host": "127.0.0.1", "port": port});
    } else if p.get("exec").is_some() {
        p.as_object_mut().unwrap().remove("exec");
        p["tcpSocket"] = json!({"host": "127.0.0.1", "port": port});
    } else if p.get("grpc").is_some() {
        p["grpc"]["port"] = json!(port);
    }
    if p["periodSeconds"].as_i64().unwrap_or(0) > 0 && p["timeoutSeconds"].as_i64().unwrap_or(0) < 1
    {
        p["timeoutSeconds"] = json!(1);
    }
    p
}

/// The Pod the ReplicaSet of `revision`'s Deployment creates.
pub fn revision_pod(revision: &Value, queue_image: &str) -> Value {
    let name = meta_str(revision, "name");
    let labels = revision
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let label = |k: &str| {
        labels
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (configuration, service) = (
        label("serving.knative.dev/configuration"),
        label("serving.knative.dev/service"),
    );
    let spec = revision.get("spec").cloned().unwrap_or(json!({}));
    let mut containers: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
    // The serving container: the one with a port, else the first.
    let serving = containers
        .iter()
        .position(|c| c["ports"].as_array().is_some_and(|p| !p.is_empty()))
        .unwrap_or(0);
    let user_port = containers
        .get(serving)
        .and_then(|c| c.pointer("/ports/0/containerPort"))
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_USER_PORT);
    let count = containers.len();
    let mut readiness = Value::Null;
    for (i, c) in containers.iter_mut().enumerate() {
        if c["name"].as_str().is_none_or(str::is_empty) {
            c["name"] = json!(if count == 1 {
                "user-container".to_string()
            } else {
                format!("user-container-{i}")
            });
        }
        if i != serving {
            continue;
        }
        let port_name = c
            .pointer("/ports/0/name")
            .and_then(Value::as_str)
            .filter(|n| *n == "h2c")
            .unwrap_or("user-port")
            .to_string();
        c["ports"] = json!([{"name": port_name, "containerPort": user_port, "protocol": "TCP"}]);
        let mut env = c["env"].as_array().cloned().unwrap_or_default();
        env.extend([
            json!({"name": "PORT", "value": user_port.to_string()}),
            json!({"name": "K_REVISION", "value": name}),
            json!({"name": "K_CONFIGURATION", "value": configuration}),
            json!({"name": "K_SERVICE", "value": service}),
        ]);
        c["env"] = json!(env);
        c["lifecycle"] = json!({"preStop": {"httpGet": {"path": "/wait-for-drain", "port": 8022, "scheme": "HTTP"}}});
        if c.get("terminationMessagePolicy").is_none() {
            c["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
        }
        // Knative defaults a missing readiness probe to TCP on the user port.
        let probe = c
            .get("readinessProbe")
            .cloned()
            .unwrap_or(json!({"tcpSocket": {"port": 0}, "successThreshold": 1}));
        readiness = queue_probe(&probe, user_port);
        if probe.get("exec").is_none() {
            c.as_object_mut().unwrap().remove("readinessProbe");
        }
        if let Some(live) = c.get_mut("livenessProbe") {
            for h in ["httpGet", "tcpSocket"] {
                if let Some(handler) = live.get_mut(h) {
                    if handler["port"].as_i64().unwrap_or(0) == 0 {
                        handler["port"] = json!(user_port);
                    }
                }
            }
        }
    }
    let env = |n: &str, v: String| json!({"name": n, "value": v});
    let queue_proxy = json!({
        "name": "queue-proxy",
        "image": queue_image,
        "ports": [
            {"name": "http-queueadm", "containerPort": 8022, "protocol": "TCP"},
            {"name": "http-autometric", "containerPort": 9090, "protocol": "TCP"},
            {"name": "http-usermetric", "containerPort": 9091, "protocol": "TCP"},
            {"name": "queue-port", "containerPort": 8012, "protocol": "TCP"},
            {"name": "https-port", "containerPort": 8112, "protocol": "TCP"},
        ],
        "env": [
            env("SERVING_NAMESPACE", meta_str(revision, "namespace").to_string()),
            env("SERVING_SERVICE", service.clone()),
            env("SERVING_CONFIGURATION", configuration.clone()),
            env("SERVING_REVISION", name.to_string()),
            env("QUEUE_SERVING_PORT", "8012".into()),
            env("CONTAINER_CONCURRENCY", spec["containerConcurrency"].as_i64().unwrap_or(0).to_string()),
            {"name": "SERVING_POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "SERVING_POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
            env("USER_PORT", user_port.to_string()),
            env("SERVING_READINESS_PROBE", if readiness.is_null() { String::new() } else { readiness.to_string() }),
            env("ENABLE_MULTI_CONTAINER_PROBES", "false".into()),
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8012, "scheme": "HTTP", "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}]}, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3, "timeoutSeconds": 1},
        "resources": {"requests": {"cpu": "25m"}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
    });
    containers.push(queue_proxy);
    let hash = random_suffix();
    let mut pod_labels: Map<String, Value> = labels.as_object().cloned().unwrap_or_default();
    pod_labels.insert("serving.knative.dev/revision".into(), json!(name));
    pod_labels.insert("app".into(), json!(name));
    pod_labels.insert("pod-template-hash".into(), json!(hash));
    let mut pod_spec = spec.clone();
    pod_spec["containers"] = json!(containers);
    for knative_only in [
        "containerConcurrency",
        "timeoutSeconds",
        "responseStartTimeoutSeconds",
        "idleTimeoutSeconds",
    ] {
        pod_spec.as_object_mut().unwrap().remove(knative_only);
    }
    pod_spec["enableServiceLinks"] = json!(false);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-deployment-{hash}-"),
            "namespace": meta_str(revision, "namespace"),
            "labels": pod_labels,
            "annotations": revision.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
        },
        "spec": pod_spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_move_into_queue_proxy_as_knative_encodes_them() {
        let revision = json!({
            "metadata": {"name": "m-00001", "namespace": "ml", "labels": {"serving.knative.dev/configuration": "m", "serving.knative.dev/service": "m"}},
            "spec": {"containerConcurrency": 0, "containers": [{"image": "x", "ports": [{"containerPort": 8081}],
                "readinessProbe": {"httpGet": {"path": "/ready"}, "periodSeconds": 2},
                "livenessProbe": {"tcpSocket": {"port": 0}}}]}
        });
        let pod = revision_pod(&revision, QUEUE_PROXY_IMAGE);
        let user = &pod["spec"]["containers"][0];
        assert_eq!(user["name"], "user-container");
        assert!(user.get("readinessProbe").is_none(), "moved to queue-proxy");
        assert_eq!(user["livenessProbe"]["tcpSocket"]["port"], 8081);
        let qp = &pod["spec"]["containers"][1];
        let env = |n: &str| {
            qp["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .unwrap()["value"]
                .clone()
        };
        assert_eq!(env("USER_PORT"), "8081");
        let probe: Value =
            serde_json::from_str(env("SERVING_READINESS_PROBE").as_str().unwrap()).unwrap();
        assert_eq!(
            probe,
            json!({"httpGet": {"path": "/ready", "host": "127.0.0.1", "port": 8081, "scheme": "HTTP"}, "periodSeconds": 2, "timeoutSeconds": 1})
        );
        assert_eq!(
            pod["metadata"]["labels"]["serving.knative.dev/revision"],
            "m-00001"
        );
        assert!(pod["spec"].get("containerConcurrency").is_none());

        // No probe: Knative's default TCP probe; exec stays and queue-proxy gets TCP.
        let mut bare = revision.clone();
        bare["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("readinessProbe");
        let pod = revision_pod(&bare, QUEUE_PROXY_IMAGE);
        let qp = &pod["spec"]["containers"][1];
        let raw = qp["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "SERVING_READINESS_PROBE")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            serde_json::from_str::<Value>(&raw).unwrap(),
            json!({"tcpSocket": {"host": "127.0.0.1", "port": 8081}, "successThreshold": 1})
        );
        let mut exec = revision;
        exec["spec"]["containers"][0]["readinessProbe"] = json!({"exec": {"command": ["ready"]}});
        let pod = revision_pod(&exec, QUEUE_PROXY_IMAGE);
        assert!(pod["spec"]["containers"][0]["readinessProbe"]["exec"].is_object());
    }
}
