//! Emulator costs a test pays: start-up (CRD schemas compiled once per process, then
//! TLS material and a listener per emulator) and request round trips through the real
//! `kube::Client` over TLS, from a plain read to writes that run validation and the
//! Knative/KServe controllers.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube_emulator::{Emulator, Options};
use serde_json::json;

fn bench(c: &mut Criterion) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let cold = Instant::now();
    let emu = rt
        .block_on(Emulator::start(Options::default()))
        .expect("emulator starts");
    eprintln!(
        "first start in this process (parses and compiles the CRD schemas): {:?}",
        cold.elapsed()
    );

    c.bench_function("start_and_drop", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(Emulator::start(Options::default()).await.expect("start")) })
    });

    emu.put(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "default" }, "data": { "k": "v" } }))
        .expect("seed configmap");
    let isvc = json!({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": { "name": "m", "namespace": "default" },
        "spec": { "predictor": { "model": { "modelFormat": { "name": "sklearn" }, "storageUri": "s3://models/m/1" } } },
    });
    emu.put(isvc).expect("seed isvc");
    let client = rt.block_on(async { emu.client() });
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    c.bench_function("get_configmap", |b| {
        b.to_async(&rt)
            .iter(|| async { configmaps.get("c").await.expect("get") })
    });

    let ksvc_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.knative.dev", "v1", "Service"),
        "services",
    );
    let ksvcs: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ksvc_ar);
    let mut flip = 0;
    c.bench_function("merge_patch_ksvc_annotation", |b| {
        b.to_async(&rt).iter(|| {
            flip += 1;
            let patch = json!({ "metadata": { "annotations": { "bench": flip.to_string() } } });
            let ksvcs = ksvcs.clone();
            async move {
                ksvcs
                    .patch(
                        "m-predictor",
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .expect("patch")
            }
        })
    });

    let isvc_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    );
    let isvcs: Api<DynamicObject> = Api::namespaced_with(client, "default", &isvc_ar);
    let mut pct = 0;
    c.bench_function("apply_isvc_canary_percent", |b| {
        b.to_async(&rt).iter(|| {
            pct = (pct + 7) % 100;
            let config = json!({
                "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": { "name": "m" },
                "spec": { "predictor": { "canaryTrafficPercent": pct, "model": { "modelFormat": { "name": "sklearn" }, "storageUri": "s3://models/m/1" } } },
            });
            let isvcs = isvcs.clone();
            async move { isvcs.patch("m", &PatchParams::apply("bench").force(), &Patch::Apply(&config)).await.expect("apply") }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
