//! The API server's admission chain for webhooks, as `k8s.io/apiserver`'s
//! `plugin/pkg/admission/webhook` runs it on CREATE and UPDATE:
//!
//! 1. built-in mutating plugins (here: ServiceAccount's token volume, [`crate::serviceaccount`]);
//! 2. every matching MutatingWebhookConfiguration webhook, ordered by configuration name
//!    then position, each answer's JSON Patch applied; webhooks with
//!    `reinvocationPolicy: IfNeeded` are called once more when a later webhook changed
//!    the object after them;
//! 3. schema validation (the write's dry run);
//! 4. every matching ValidatingWebhookConfiguration webhook (here one after another).
//!
//! Matching: `rules` (operations, apiGroups, apiVersions, resources, scope),
//! `namespaceSelector` (namespace labels plus `kubernetes.io/metadata.name`, which the
//! real API server sets on every namespace) and `objectSelector` (the object's labels,
//! or the old object's on UPDATE). `clientConfig.url`, or `clientConfig.service`
//! resolved to the loopback address a test registered with
//! [`crate::Emulator::register_service`]; TLS verified against `caBundle` for the name
//! `<service>.<namespace>.svc`. `timeoutSeconds` (default 10) and `failurePolicy`
//! (default Fail) as documented.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::status::ApiError;

/// Where a Service's port goes, registered by tests: `(namespace, name, port)`.
pub type Services = Arc<Mutex<HashMap<(String, String, u16), std::net::SocketAddr>>>;

/// One admission attempt's facts.
pub struct Attempt<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    pub user: &'a str,
    pub dry_run: bool,
    /// Labels of the namespace (empty for cluster-scoped objects).
    pub namespace_labels: &'a serde_json::Map<String, Value>,
}

/// A webhook of a configuration, with what the chain needs to call it.
#[derive(Clone)]
pub struct Hook {
    pub name: String,
    pub config: Value,
    pub reinvoke: bool,
}

/// The configurations' webhooks in the API server's order: by configuration name, then
/// position.
pub fn hooks(configurations: &[Value]) -> Vec<Hook> {
    let mut sorted: Vec<&Value> = configurations.iter().collect();
    sorted.sort_by_key(|c| crate::meta::meta_str(c, "name").to_string());
    sorted
        .into_iter()
        .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
        .map(|w| Hook {
            name: w["name"].as_str().unwrap_or("").to_string(),
            reinvoke: w["reinvocationPolicy"] == "IfNeeded",
            config: w,
        })
        .collect()
}

/// Runs the mutating webhooks over `object`; returns the mutated object.
pub async fn mutate(
    hooks: &[Hook],
    attempt: &Attempt<'_>,
    services: &Services,
    mut object: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let matching: Vec<&Hook> = hooks
        .iter()
        .filter(|h| matches(&h.config, attempt, &object, old))
        .collect();
    // changed_after[i]: the object changed after webhook i last ran.
    let mut changed_after = vec![false; matching.len()];
    for (i, hook) in matching.iter().enumerate() {
        let before = object.clone();
        object = call_mutating(hook, attempt, services, object, old).await?;
        if object != before {
            for flag in changed_after.iter_mut().take(i) {
                *flag = true;
            }
        }
    }
    // Reinvoked at most once, in order.
    for (i, hook) in matching.iter().enumerate() {
        if hook.reinvoke && changed_after[i] {
            object = call_mutating(hook, attempt, services, object, old).await?;
        }
    }
    Ok(object)
}

/// Runs the validating webhooks; the first denial stops the request.
pub async fn validate(
    hooks: &[Hook],
    attempt: &Attempt<'_>,
    services: &Services,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    for hook in hooks
        .iter()
        .filter(|h| matches(&h.config, attempt, object, old))
    {
        let response = match call(hook, attempt, services, object, old).await {
            Ok(response) => response,
            Err(e) if ignores_failure(hook) => {
                tracing::debug!(webhook = %hook.name, error = %e.message, "failurePolicy Ignore");
                continue;
            }
            Err(e) => return Err(e),
        };
        if response["allowed"] != true {
            return Err(denied(hook, &response));
        }
    }
    Ok(())
}

async fn call_mutating(
    hook: &Hook,
    attempt: &Attempt<'_>,
    services: &Services,
    object: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let response = match call(hook, attempt, services, &object, old).await {
        Ok(response) => response,
        Err(e) if ignores_failure(hook) => {
            tracing::debug!(webhook = %hook.name, error = %e.message, "failurePolicy Ignore");
            return Ok(object);
        }
        Err(e) => return Err(e),
    };
    if response["allowed"] != true {
        return Err(denied(hook, &response));
    }
    let Some(patch) = response.get("patch").and_then(Value::as_str) else {
        return Ok(object);
    };
    let failed = |message: String| {
        ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{}\": {message}",
            hook.name
        ))
    };
    if response["patchType"] != "JSONPatch" {
        return Err(failed(format!(
            "patchType {} is not JSONPatch",
            response["patchType"]
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| failed(format!("patch is not base64: {e}")))?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| failed(format!("patch is not a JSON Patch: {e}")))?;
    let mut patched = object;
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| failed(format!("JSON Patch does not apply: {e}")))?;
    Ok(patched)
}

fn ignores_failure(hook: &Hook) -> bool {
    hook.config["failurePolicy"] == "Ignore"
}

fn denied(hook: &Hook, response: &Value) -> ApiError {
    let status = &response["status"];
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(403);
    let reason = status["reason"].as_str().unwrap_or("Forbidden");
    let message = status["message"].as_str().unwrap_or("");
    ApiError::new(
        code,
        reason,
        format!(
            "admission webhook \"{}\" denied the request: {message}",
            hook.name
        ),
    )
}

/// Does `hook` want this request?
fn matches(hook: &Value, attempt: &Attempt<'_>, object: &Value, old: Option<&Value>) -> bool {
    let rules = hook["rules"].as_array().cloned().unwrap_or_default();
    let has = |list: &Value, value: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
    };
    let rule_ok = rules.iter().any(|r| {
        has(&r["operations"], attempt.operation)
            && has(&r["apiGroups"], attempt.group)
            && has(&r["apiVersions"], attempt.version)
            && has(&r["resources"], attempt.plural)
            && match r["scope"].as_str().unwrap_or("*") {
                "Namespaced" => !attempt.namespace.is_empty(),
                "Cluster" => attempt.namespace.is_empty(),
                _ => true,
            }
    });
    if !rule_ok {
        return false;
    }
    let mut ns_labels = attempt.namespace_labels.clone();
    if !attempt.namespace.is_empty() {
        ns_labels.insert(
            "kubernetes.io/metadata.name".into(),
            json!(attempt.namespace),
        );
    }
    let namespace_ok = attempt.namespace.is_empty()
        || selects(&hook["namespaceSelector"], &Value::Object(ns_labels));
    let labels_of = |o: &Value| o.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    // On UPDATE the API server matches either the new or the old object.
    let object_ok = selects(&hook["objectSelector"], &labels_of(object))
        || old.is_some_and(|o| selects(&hook["objectSelector"], &labels_of(o)));
    namespace_ok && object_ok
}

/// A `metav1.LabelSelector` (absent or `{}` selects everything).
fn selects(selector: &Value, labels: &Value) -> bool {
    if selector.is_null() {
        return true;
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let expressions = selector["matchExpressions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match_labels
        && expressions.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or("") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

/// Calls one webhook; the AdmissionReview's `response`, or why the call failed.
async fn call(
    hook: &Hook,
    attempt: &Attempt<'_>,
    services: &Services,
    object: &Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let failed = |message: String| {
        ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{}\": failed to call webhook: {message}",
            hook.name
        ))
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let gvk = json!({"group": attempt.group, "version": attempt.version, "kind": attempt.kind});
    let gvr =
        json!({"group": attempt.group, "version": attempt.version, "resource": attempt.plural});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": crate::meta::meta_str(object, "name"),
            "namespace": attempt.namespace,
            "operation": attempt.operation,
            "userInfo": {"username": attempt.user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": attempt.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if attempt.operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }},
        }
    });
    let client_config = &hook.config["clientConfig"];
    let (address, host, path) = target(client_config, services).map_err(failed)?;
    let timeout = Duration::from_secs(hook.config["timeoutSeconds"].as_u64().unwrap_or(10));
    let ca = client_config["caBundle"].as_str().unwrap_or("");
    let body = serde_json::to_vec(&review).expect("a review serialises");
    let exchange = post(address, &host, &path, ca, body);
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            failed(format!(
                "context deadline exceeded (timeoutSeconds {})",
                timeout.as_secs()
            ))
        })?
        .map_err(failed)?;
    let review: Value = serde_json::from_slice(&answer)
        .map_err(|e| failed(format!("the answer is not JSON: {e}")))?;
    let response = review.get("response").cloned().unwrap_or(Value::Null);
    if response["uid"] != json!(uid) {
        return Err(failed(format!(
            "expected response.uid={uid:?}, got {}",
            response["uid"]
        )));
    }
    Ok(response)
}

/// `(address, TLS name, path)` of a `clientConfig`.
fn target(
    client_config: &Value,
    services: &Services,
) -> Result<(std::net::SocketAddr, String, String), String> {
    if let Some(url) = client_config["url"].as_str() {
        let uri: http::Uri = url.parse().map_err(|e| format!("url {url:?}: {e}"))?;
        let host = uri.host().ok_or("url has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(443);
        let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to nothing"))?;
        let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
        return Ok((address, host, path));
    }
    let service = &client_config["service"];
    let (namespace, name) = (
        service["namespace"].as_str().unwrap_or(""),
        service["name"].as_str().unwrap_or(""),
    );
    let port = service["port"].as_u64().unwrap_or(443) as u16;
    let address = services
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(namespace.to_string(), name.to_string(), port))
        .copied()
        .ok_or_else(|| {
            format!(
                "service \"{name}\" not found in namespace {namespace:?} on port {port} \
                 (register it with Emulator::register_service)"
            )
        })?;
    let path = service["path"].as_str().unwrap_or("/").to_string();
    Ok((address, format!("{name}.{namespace}.svc"), path))
}

/// One HTTPS POST, verified against `ca` (base64 PEM) for `host`.
async fn post(
    address: std::net::SocketAddr,
    host: &str,
    path: &str,
    ca: &str,
    body: Vec<u8>,
) -> Result<Bytes, String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .map_err(|e| format!("caBundle is not base64: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("caBundle PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("x509: caBundle holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("dial tcp {address}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header(http::header::HOST, host)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("Post \"https://{host}{path}\": {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "the server responded with {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(bytes)
}
