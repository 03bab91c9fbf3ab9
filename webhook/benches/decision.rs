//! Decision latency of the engine in-process: a realistic ~6 KB Pod AdmissionReview (the
//! pod Knative builds for examples/good/knative-service.yaml) from bytes to answer,
//! and the same for a denied Deployment.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use guardrail_webhook::{admission, Config, Engine};
use serde_json::{json, Value};

fn fixture(relative: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_saphyr::from_str(&text).expect("fixture YAML")
}

fn review(object: Value, group: &str, kind: &str, resource: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "ml-serving",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    }))
    .expect("serialisable")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let engine = Engine::new(Config::default()).expect("engine");
    let pod = review(
        fixture("tests/data/knative-revision-pod.yaml"),
        "",
        "Pod",
        "pods",
    );
    let deployment = review(
        fixture("../examples/bad/deployment-unpinned.yaml"),
        "apps",
        "Deployment",
        "deployments",
    );

    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Bytes(pod.len() as u64));
    group.bench_function(format!("knative_pod_allow_{}B", pod.len()), |b| {
        b.to_async(&runtime).iter(|| async {
            let d = admission::decide(&engine, &pod).await.expect("decided");
            assert_eq!(d.decision, "allow");
        })
    });
    group.throughput(Throughput::Bytes(deployment.len() as u64));
    group.bench_function("deployment_deny", |b| {
        b.to_async(&runtime).iter(|| async {
            let d = admission::decide(&engine, &deployment)
                .await
                .expect("decided");
            assert_eq!(d.decision, "deny");
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
