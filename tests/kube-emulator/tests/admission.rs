//! The admission chain: webhooks the emulator calls over verified HTTPS, as the API
//! server does (mutating by name with reinvocation, schema, validating; selectors,
//! failurePolicy), the ServiceAccount plugin before them, and Revision pods created
//! through it.

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use kube::api::{Api, PostParams};
use kube_emulator::{Emulator, Options};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{json, Value};

type Handler = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A webhook server for `<name>.<namespace>.svc` with its own CA; every request's
/// AdmissionReview is recorded.
struct Hook {
    addr: SocketAddr,
    ca_bundle: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

async fn hook_server(name: &str, namespace: &str, handler: Handler) -> Hook {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![format!("{name}.{namespace}.svc")])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, handler, recorded) =
                (acceptor.clone(), handler.clone(), recorded.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let (handler, recorded) = (handler.clone(), recorded.clone());
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        recorded.lock().unwrap().push(review.clone());
                        let mut response = handler(&review["request"]);
                        response["uid"] = review["request"]["uid"].clone();
                        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from(
                            answer.to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Hook {
        addr,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
        seen,
    }
}

fn patch(ops: Value) -> Value {
    json!({
        "allowed": true,
        "patchType": "JSONPatch",
        "patch": base64::engine::general_purpose::STANDARD.encode(ops.to_string()),
    })
}

fn configuration(kind: &str, name: &str, hooks: Value) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": hooks})
}

fn entry(name: &str, service: &str, path: &str, ca: &str, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {"service": {"namespace": "hooks", "name": service, "path": path, "port": 443}, "caBundle": ca},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        hook[k] = v.clone();
    }
    hook
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
           "spec": {"containers": [{"name": "main", "image": "registry.example/m@sha256:aa"}]}})
}

async fn create(emu: &Emulator, pod: Value) -> Result<Value, kube::Error> {
    let api: Api<kube::api::DynamicObject> = common::api(emu, "", "v1", "Pod", "pods");
    let object = serde_json::from_value(pod).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .map(|o| serde_json::to_value(o).unwrap())
}

#[tokio::test]
async fn mutating_then_validating_webhooks_shape_and_judge_a_pod() {
    let emu = common::start().await;
    // Adds a label; the validating one denies pods labelled deny=yes.
    let mutator = hook_server(
        "mutator",
        "hooks",
        Arc::new(|_| {
            patch(json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]))
        }),
    )
    .await;
    let validator = hook_server("validator", "hooks", Arc::new(|req: &Value| {
        if req["object"]["metadata"]["labels"]["deny"] == "yes" {
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "no pods labelled deny"}})
        } else {
            json!({"allowed": true})
        }
    })).await;
    emu.register_service("hooks", "mutator", 443, mutator.addr);
    emu.register_service("hooks", "validator", 443, validator.addr);
    emu.put(configuration(
        "MutatingWebhookConfiguration",
        "m",
        json!([entry(
            "m.test",
            "mutator",
            "/mutate",
            &mutator.ca_bundle,
            json!({})
        )]),
    ))
    .unwrap();
    emu.put(configuration(
        "ValidatingWebhookConfiguration",
        "v",
        json!([entry(
            "v.test",
            "validator",
            "/validate",
            &validator.ca_bundle,
            json!({})
        )]),
    ))
    .unwrap();

    let created = create(&emu, pod("a", json!({"app": "x"}))).await.unwrap();
    assert_eq!(created["metadata"]["labels"]["mutated"], "yes");
    // The ServiceAccount plugin ran first: the token is in the pod the webhook saw.
    let seen = mutator.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["request"]["operation"], "CREATE");
    assert_eq!(
        seen["request"]["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    let mounts = &seen["request"]["object"]["spec"]["containers"][0]["volumeMounts"];
    assert_eq!(
        mounts[0]["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount",
        "{seen}"
    );
    assert_eq!(
        seen["request"]["object"]["spec"]["serviceAccountName"],
        "default"
    );
    // The validating webhook sees the mutated pod.
    let judged = validator.seen.lock().unwrap()[0].clone();
    assert_eq!(
        judged["request"]["object"]["metadata"]["labels"]["mutated"],
        "yes"
    );

    let status = common::api_status(
        create(&emu, pod("b", json!({"deny": "yes"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "admission webhook \"v.test\" denied the request: no pods labelled deny"
    );
    assert!(emu.get("pods", "default", "b").is_none());
}

#[tokio::test]
async fn selectors_failure_policy_and_reinvocation() {
    let emu = common::start().await;
    // "a" (first by name) records whether "b"'s label is there; "b" adds it.
    let a = hook_server("a", "hooks", Arc::new(|req: &Value| {
        let seen_b = req["object"]["metadata"]["labels"]["b"] == "done";
        patch(json!([{"op": "add", "path": "/metadata/annotations", "value": {"a-saw-b": seen_b.to_string()}}]))
    })).await;
    let b = hook_server(
        "b",
        "hooks",
        Arc::new(|_| patch(json!([{"op": "add", "path": "/metadata/labels/b", "value": "done"}]))),
    )
    .await;
    emu.register_service("hooks", "a", 443, a.addr);
    emu.register_service("hooks", "b", 443, b.addr);
    let only_opted_in = json!({"objectSelector": {"matchLabels": {"inject": "true"}}, "reinvocationPolicy": "IfNeeded"});
    emu.put(configuration(
        "MutatingWebhookConfiguration",
        "1-a",
        json!([entry("a.test", "a", "/", &a.ca_bundle, only_opted_in)]),
    ))
    .unwrap();
    emu.put(configuration(
        "MutatingWebhookConfiguration",
        "2-b",
        json!([entry("b.test", "b", "/", &b.ca_bundle, json!({}))]),
    ))
    .unwrap();

    let created = create(&emu, pod("p", json!({"inject": "true"})))
        .await
        .unwrap();
    assert_eq!(
        created["metadata"]["annotations"]["a-saw-b"], "true",
        "a was reinvoked after b"
    );
    assert_eq!(a.seen.lock().unwrap().len(), 2);
    let created = create(&emu, pod("q", json!({}))).await.unwrap();
    assert!(
        created["metadata"].get("annotations").is_none(),
        "objectSelector"
    );
    assert_eq!(a.seen.lock().unwrap().len(), 2);

    // A webhook nobody serves: Fail refuses the write, Ignore lets it through.
    let gone = |policy: &str| {
        entry(
            &format!("gone-{policy}.test"),
            "nobody",
            "/",
            &a.ca_bundle,
            json!({"failurePolicy": policy, "timeoutSeconds": 1}),
        )
    };
    emu.put(configuration(
        "ValidatingWebhookConfiguration",
        "gone",
        json!([gone("Ignore")]),
    ))
    .unwrap();
    create(&emu, pod("r", json!({}))).await.unwrap();
    emu.put(configuration(
        "ValidatingWebhookConfiguration",
        "gone",
        json!([gone("Fail")]),
    ))
    .unwrap();
    let status = common::api_status(create(&emu, pod("s", json!({}))).await.unwrap_err());
    assert_eq!(status.code, 500);
    assert!(
        status
            .message
            .contains("failed calling webhook \"gone-Fail.test\""),
        "{}",
        status.message
    );

    // namespaceSelector: the default kubernetes.io/metadata.name label is matched.
    let mut elsewhere = gone("Fail");
    elsewhere["namespaceSelector"] = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["default"]}]});
    emu.put(configuration(
        "ValidatingWebhookConfiguration",
        "gone",
        json!([elsewhere]),
    ))
    .unwrap();
    create(&emu, pod("t", json!({}))).await.unwrap();
}

#[tokio::test]
async fn a_revision_gets_its_pod_through_the_admission_chain() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emu = Emulator::start(Options {
        revision_pods: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let mutator = hook_server("mutator", "hooks", Arc::new(|req: &Value| {
        // ReplicaSet pods have only generateName at mutating admission.
        assert!(req["object"]["metadata"].get("name").is_none(), "{req}");
        assert_eq!(req["name"], "");
        patch(json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "added", "image": "registry.example/s@sha256:bb"}}]))
    })).await;
    emu.register_service("hooks", "mutator", 443, mutator.addr);
    emu.put(configuration(
        "MutatingWebhookConfiguration",
        "m",
        json!([entry(
            "m.test",
            "mutator",
            "/",
            &mutator.ca_bundle,
            json!({})
        )]),
    ))
    .unwrap();
    emu.apply_yaml(
        &serde_saphyr::to_string(&common::ksvc(
            "model",
            json!([{"latestRevision": true, "percent": 100}]),
        ))
        .unwrap(),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pod = loop {
        let pods = emu.list("pods", "default").unwrap();
        if let Some(pod) = pods.into_iter().next() {
            break pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pod for the revision"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        pod["metadata"]["labels"]["serving.knative.dev/revision"],
        "model-00001"
    );
    assert!(pod["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("model-00001-deployment-"));
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user-container", "queue-proxy", "added"]);
    // Added after the ServiceAccount plugin: no token mount in the webhook's container.
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert!(containers[0]["volumeMounts"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    assert!(containers[2].get("volumeMounts").is_none());

    // A refused pod is a FailedCreate Event on the Revision.
    emu.put(configuration(
        "MutatingWebhookConfiguration",
        "m",
        json!([entry(
            "m.test",
            "nobody",
            "/",
            &mutator.ca_bundle,
            json!({"timeoutSeconds": 1})
        )]),
    ))
    .unwrap();
    let mut next = common::ksvc("model", json!([{"latestRevision": true, "percent": 100}]));
    next["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example/model@sha256:cc");
    emu.apply_yaml(&serde_saphyr::to_string(&next).unwrap())
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = emu.list("events", "default").unwrap();
        if let Some(e) = events.iter().find(|e| e["reason"] == "FailedCreate") {
            assert_eq!(e["involvedObject"]["name"], "model-00002");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("failed calling webhook \"m.test\""),
                "{e}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedCreate event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
