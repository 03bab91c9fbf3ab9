use serde_json::json;

use super::*;

#[test]
fn kinds_are_recognised_by_group_not_version() {
    assert_eq!(
        WorkloadKind::from_api_version("apps/v1", "Deployment"),
        Some(WorkloadKind::Deployment)
    );
    assert_eq!(
        WorkloadKind::from_api_version("v1", "Pod"),
        Some(WorkloadKind::Pod)
    );
    assert_eq!(
        WorkloadKind::from_api_version("serving.knative.dev/v1", "Service"),
        Some(WorkloadKind::KnativeService)
    );
    // A core Service makes no pods.
    assert_eq!(WorkloadKind::from_api_version("v1", "Service"), None);
    assert_eq!(WorkloadKind::from_api_version("v1", "ConfigMap"), None);
}

#[test]
fn cronjob_pod_spec_and_template_metadata_are_found() {
    let cron = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "ml", "labels": {"a": "1"}},
        "spec": {"jobTemplate": {"spec": {"template": {
            "metadata": {"labels": {"b": "2"}, "annotations": {"x": "y"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}}
    });
    let w = Workload::read(WorkloadKind::CronJob, &cron).expect("readable");
    assert_eq!(w.pods[0].path, "spec.jobTemplate.spec.template.spec");
    // Only the template's labels reach the pods.
    assert_eq!(w.labels.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(w.annotations.get("x").map(String::as_str), Some("y"));
    let images = w.images(&w.containers());
    assert_eq!(
        images[0].field,
        "spec.jobTemplate.spec.template.spec.containers[0].image"
    );
}

#[test]
fn knative_unnamed_containers_get_knative_default_names() {
    let one = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}});
    let w = Workload::read(WorkloadKind::KnativeService, &one).expect("readable");
    assert_eq!(w.containers()[0].name, "user-container");

    let two = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"template": {"spec": {"containers": [{"image": "a"}, {"image": "b"}]}}}});
    let w = Workload::read(WorkloadKind::KnativeService, &two).expect("readable");
    let names: Vec<String> = w.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["user-container-0", "user-container-1"]);
}

#[test]
fn unreadable_objects_name_the_field() {
    let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "readinessProbe": "yes"}]}}}});
    let e = Workload::read(WorkloadKind::Deployment, &bad).expect_err("unreadable");
    assert!(
        e.message
            .contains("spec.template.spec.containers[0].readinessProbe"),
        "{e}"
    );

    let no_spec = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let e = Workload::read(WorkloadKind::Pod, &no_spec).expect_err("unreadable");
    assert!(e.to_string().contains("spec is missing"), "{e}");

    let labels = json!({"metadata": {"name": "p", "labels": {"a": 1}}, "spec": {}});
    let e = Workload::read(WorkloadKind::Pod, &labels).expect_err("unreadable");
    assert!(e.message.contains("metadata.labels"), "{e}");

    let e = Workload::read(WorkloadKind::Pod, &json!("pod")).expect_err("unreadable");
    assert!(e.message.contains("not a JSON object"), "{e}");
}

#[test]
fn pods_from_replicasets_are_named_by_generate_name() {
    let pod = json!({"metadata": {"generateName": "web-7c9d-"}, "spec": {"containers": []}});
    let w = Workload::read(WorkloadKind::Pod, &pod).expect("readable");
    assert_eq!(w.name, "web-7c9d-*");
}
