//! Setup shared by the emulator's integration tests: a started emulator and
//! dynamic APIs for the Knative Service CRD.

#![allow(dead_code)] // Each test file uses a different part.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube_emulator::{Emulator, Options};
use serde_json::{json, Value};

/// An emulator with default options (the crypto provider installed first, as in a
/// binary's main).
pub async fn start() -> Emulator {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Emulator::start(Options::default())
        .await
        .expect("emulator starts")
}

/// A dynamic API for `kind` in namespace `default`.
pub fn api(
    emu: &Emulator,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(emu.client(), "default", &ar)
}

/// Knative Services in namespace `default`.
pub fn ksvc_api(emu: &Emulator) -> Api<DynamicObject> {
    api(emu, "serving.knative.dev", "v1", "Service", "services")
}

/// A Knative Service `name` in `default` with the given `spec.traffic`.
pub fn ksvc(name: &str, traffic: Value) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "template": { "spec": { "containers": [{ "image": "registry.example/model@sha256:aa" }] } }, "traffic": traffic },
    })
}

/// The API Status of a failed call; panics on any other error.
pub fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(s) => s,
        other => panic!("expected an API Status error, got {other:?}"),
    }
}
