//! API-server semantics through the real `kube::Client`: CRUD, optimistic concurrency,
//! Status bodies, generation and the status subresource, patches, selectors, paging,
//! finalizers, owner cascade, and schema/Knative validation.

mod common;

use common::{api_status, ksvc, ksvc_api, start};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// The numeric resourceVersion of an object the emulator returned.
fn resource_version(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric rv")
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

#[tokio::test]
async fn crud_bumps_resource_version_and_stale_updates_conflict() {
    let emu = start().await;
    let api: Api<ConfigMap> = Api::namespaced(emu.client(), "default");
    let created = api
        .create(&PostParams::default(), &configmap("cfg", &[("a", "1")]))
        .await
        .expect("create");
    let rv1 = resource_version(&created.metadata);
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let again = api
        .create(&PostParams::default(), &configmap("cfg", &[]))
        .await
        .expect_err("duplicate create");
    let status = api_status(again);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );

    let mut fresh = created.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = api
        .replace("cfg", &PostParams::default(), &fresh)
        .await
        .expect("update with current rv");
    let rv2 = resource_version(&updated.metadata);
    assert!(
        rv2 > rv1,
        "resourceVersion must bump on write ({rv1} -> {rv2})"
    );

    // `created` carries the old resourceVersion now.
    let stale = api
        .replace("cfg", &PostParams::default(), &created)
        .await
        .expect_err("stale update");
    let status = api_status(stale);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );

    // A merge patch carrying a stale resourceVersion conflicts too.
    let patch = json!({ "metadata": { "resourceVersion": rv1.to_string() }, "data": { "a": "3" } });
    let status = api_status(
        api.patch("cfg", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err("stale patch"),
    );
    assert_eq!(status.code, 409);

    // kube's typed JSON patch needs a feature we do not enable; send it as kubectl does.
    let ops = json!([{ "op": "add", "path": "/data/b", "value": "x" }, { "op": "test", "path": "/data/a", "value": "2" }]);
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("Content-Type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).expect("ops serialize"))
        .expect("request");
    let patched: ConfigMap = emu.client().request(request).await.expect("json patch");
    assert_eq!(
        patched.data.expect("data").get("b").map(String::as_str),
        Some("x")
    );
    let failing = json!([{ "op": "test", "path": "/data/a", "value": "nope" }]);
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("Content-Type", "application/json-patch+json")
        .body(serde_json::to_vec(&failing).expect("ops serialize"))
        .expect("request");
    let status = api_status(
        emu.client()
            .request::<ConfigMap>(request)
            .await
            .expect_err("failed test op"),
    );
    assert_eq!(status.code, 422);

    // Malformed writes get a 400/422 Status, never a dropped connection.
    for (content_type, body) in [
        ("application/merge-patch+json", json!([1])),
        (
            "application/merge-patch+json",
            json!({ "metadata": { "labels": "app=x" } }),
        ),
        (
            "application/json-patch+json",
            json!([{ "op": "replace", "path": "", "value": 7 }]),
        ),
    ] {
        let request = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
            .header("Content-Type", content_type)
            .body(serde_json::to_vec(&body).expect("serialize"))
            .expect("request");
        let err = emu
            .client()
            .request::<ConfigMap>(request)
            .await
            .expect_err("malformed patch");
        let code = api_status(err).code;
        assert!(code == 400 || code == 422, "{body}: {code}");
    }

    api.delete("cfg", &DeleteParams::default())
        .await
        .expect("delete");
    let status = api_status(api.get("cfg").await.expect_err("gone"));
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "configmaps \"cfg\" not found");

    let nowhere: Api<ConfigMap> = Api::namespaced(emu.client(), "no-such-ns");
    let status = api_status(
        nowhere
            .create(&PostParams::default(), &configmap("x", &[]))
            .await
            .expect_err("unknown namespace"),
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "namespaces \"no-such-ns\" not found")
    );
}

#[tokio::test]
async fn generation_tracks_spec_and_status_is_a_separate_subresource() {
    let emu = start().await;
    let api = ksvc_api(&emu);
    let obj: DynamicObject = serde_json::from_value(ksvc(
        "m",
        json!([{ "latestRevision": true, "percent": 100 }]),
    ))
    .expect("object");
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create ksvc");
    assert_eq!(created.metadata.generation, Some(1));

    let annotate = json!({ "metadata": { "annotations": { "team": "ml" } }, "status": { "url": "http://evil" } });
    let patched = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("metadata patch");
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    assert_ne!(
        patched.data["status"]["url"],
        json!("http://evil"),
        "status is ignored on the main resource"
    );

    let spec = json!({ "spec": { "template": { "spec": { "containers": [{ "image": "registry.example/model@sha256:bb" }] } } } });
    let patched = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("spec patch");
    assert_eq!(patched.metadata.generation, Some(2));

    let status = json!({ "status": { "observedGeneration": 99 } });
    let patched = api
        .patch_status("m", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    assert_eq!(patched.data["status"]["observedGeneration"], json!(99));
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "status writes never bump generation"
    );
}

#[tokio::test]
async fn crd_schema_and_knative_traffic_rules_reject_with_422_causes() {
    let emu = start().await;
    let api = ksvc_api(&emu);
    let create = |v: Value| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &serde_json::from_value::<DynamicObject>(v).expect("object"),
            )
            .await
        }
    };
    let status = api_status(
        create(ksvc(
            "a",
            json!([{ "latestRevision": true, "percent": 90 }]),
        ))
        .await
        .expect_err("sum 90"),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .contains("Traffic targets sum to 90, want 100"),
        "{}",
        status.message
    );
    assert_eq!(
        status.details.expect("details").causes[0].field,
        "spec.traffic"
    );

    let both = json!([{ "latestRevision": true, "revisionName": "a-00001", "percent": 100 }]);
    let status = api_status(
        create(ksvc("b", both))
            .await
            .expect_err("latestRevision with revisionName"),
    );
    assert!(
        status
            .message
            .contains("may not set revisionName \"a-00001\" when latestRevision is true"),
        "{}",
        status.message
    );

    let dup = json!([{ "tag": "x", "latestRevision": true, "percent": 50 }, { "tag": "x", "revisionName": "r", "percent": 50 }]);
    let status = api_status(create(ksvc("c", dup)).await.expect_err("duplicate tags"));
    assert!(
        status.message.contains("Multiple definitions for \"x\""),
        "{}",
        status.message
    );

    let typed = json!([{ "latestRevision": true, "percent": "all" }]);
    let status = api_status(create(ksvc("d", typed)).await.expect_err("schema type"));
    let causes = status.details.expect("details").causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field == "spec.traffic[0].percent" && c.reason == "FieldValueTypeInvalid"),
        "{causes:?}"
    );

    // Unknown fields: pruned by default, rejected under fieldValidation=Strict.
    let mut extra = ksvc("e", json!([{ "latestRevision": true, "percent": 100 }]));
    extra["spec"]["bogus"] = json!(1);
    let created = create(extra.clone()).await.expect("unknown field pruned");
    assert!(created.data["spec"].get("bogus").is_none());
    extra["metadata"]["name"] = json!("f");
    let status = api_status(
        api.patch(
            "f",
            &PatchParams::apply("guardrail").validation_strict(),
            &Patch::Apply(&extra),
        )
        .await
        .expect_err("strict"),
    );
    assert_eq!(status.code, 400);
    assert!(
        status.message.contains("unknown field \"spec.bogus\""),
        "{}",
        status.message
    );

    let isvc = json!({ "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": { "name": "i", "namespace": "default" }, "spec": { "predictor": { "canaryTrafficPercent": 140, "model": { "storageUri": "s3://m" } } } });
    let err = emu.put(isvc).expect_err("canary out of range");
    assert!(
        err.to_string()
            .contains("TrafficPercent must be between [0, 100]"),
        "{err}"
    );
}

#[tokio::test]
async fn selectors_paging_finalizers_and_owner_cascade() {
    let emu = start().await;
    for (name, tier) in [("a", "gpu"), ("b", "cpu"), ("c", "gpu")] {
        emu.put(json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "namespace": "default", "labels": { "tier": tier } }, "stringData": { "k": "v" } }))
            .expect("seed secret");
    }
    let api: Api<Secret> = Api::namespaced(emu.client(), "default");
    let gpu = api
        .list(&ListParams::default().labels("tier=gpu"))
        .await
        .expect("list");
    assert_eq!(
        gpu.items
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(
        gpu.items[0].data.as_ref().expect("data")["k"].0,
        b"v",
        "stringData is folded into data"
    );
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .expect("field selector");
    assert_eq!(by_name.items.len(), 1);

    let page = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(
        (
            rest.items.len(),
            rest.metadata.continue_.as_deref().unwrap_or("")
        ),
        (1, "")
    );

    let bad = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "bad" }, "data": { "k": "%%%" } });
    match emu.put(bad) {
        Err(kube_emulator::Error::Rejected { source, .. }) => {
            assert_eq!(source.code, 400, "{source}")
        }
        other => panic!("invalid base64 must be rejected, got {other:?}"),
    }

    // A finalizer holds deletion until it is removed.
    let held = json!({ "metadata": { "finalizers": ["guardrail.dev/cleanup"] } });
    api.patch("a", &PatchParams::default(), &Patch::Merge(&held))
        .await
        .expect("add finalizer");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete request accepted");
    let terminating = api.get("a").await.expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let release = json!({ "metadata": { "finalizers": null } });
    api.patch("a", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("remove finalizer");
    assert_eq!(
        api_status(api.get("a").await.expect_err("deleted")).code,
        404
    );

    // Deleting a Knative Service removes what its controller created.
    emu.put(ksvc(
        "m",
        json!([{ "latestRevision": true, "percent": 100 }]),
    ))
    .expect("seed ksvc");
    assert!(emu
        .get("revisions.serving.knative.dev", "default", "m-00001")
        .is_some());
    ksvc_api(&emu)
        .delete("m", &DeleteParams::default())
        .await
        .expect("delete ksvc");
    for kind in ["configurations", "routes"] {
        assert!(
            emu.get(kind, "default", "m").is_none(),
            "{kind} should be garbage-collected"
        );
    }
    assert!(emu.get("revisions", "default", "m-00001").is_none());
}
