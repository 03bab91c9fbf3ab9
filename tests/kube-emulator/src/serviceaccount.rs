//! The ServiceAccount admission plugin (`plugin/pkg/admission/serviceaccount`), which the
//! API server runs on every Pod CREATE **before** the admission webhooks: the pod gets
//! `serviceAccountName: default` when it names none, and, unless
//! `automountServiceAccountToken: false`, a projected `kube-api-access-<random>` volume
//! (token, `kube-root-ca.crt`, namespace) mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init
//! container present then. A container a later webhook adds gets no mount: that is
//! what makes an injector copy it. (The ServiceAccount object is not required here.)

use serde_json::{json, Value};

use crate::meta::random_suffix;

pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn admit(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("serviceAccountName")
        .or_insert_with(|| json!("default"));
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let mounted = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == TOKEN_PATH))
    };
    let volume = format!("kube-api-access-{}", random_suffix());
    let mut used = false;
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| !mounted(c)) {
            let mount = json!({"name": volume, "mountPath": TOKEN_PATH, "readOnly": true});
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(mounts) => mounts.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
            used = true;
        }
    }
    if !used {
        return;
    }
    let projected = json!({
        "name": volume,
        "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(volumes) => volumes.push(projected),
        None => {
            spec.insert("volumes".into(), json!([projected]));
        }
    }
}
