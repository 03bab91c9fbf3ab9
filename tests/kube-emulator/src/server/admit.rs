//! The admission chain around writes: built-in plugins and webhooks
//! ([`crate::webhooks`]) before the state's own write. Async (webhooks are HTTPS calls),
//! so it runs outside the state lock: the lock is taken to read configurations and to
//! dry-run the write (schema validation) between the mutating and validating phases.

use std::sync::Arc;

use serde_json::Value;

use super::Shared;
use crate::kinds::Kind;
use crate::meta::{meta_str, random_suffix};
use crate::state::WriteOptions;
use crate::status::ApiError;
use crate::webhooks::{self, Attempt};

/// One write to admit.
pub(crate) struct Write<'a> {
    pub kind: Arc<Kind>,
    pub namespace: &'a str,
    /// `CREATE` or `UPDATE`.
    pub operation: &'a str,
    pub user: &'a str,
    pub dry_run: bool,
}

/// Admits `object`: the object to store, or why not.
pub(crate) async fn admit(
    shared: &Shared,
    write: &Write<'_>,
    mut object: Value,
) -> Result<Value, ApiError> {
    let kind = &write.kind;
    let pod_create = kind.group.is_empty() && kind.kind == "Pod" && write.operation == "CREATE";
    if pod_create {
        crate::serviceaccount::admit(&mut object);
    }
    let (mutating, validating, namespace_labels, old) = {
        let state = shared.lock();
        let configs = |k: &str| {
            state
                .kinds
                .by_type("admissionregistration.k8s.io/v1", k)
                .map(|kind| {
                    state
                        .store
                        .list(&kind, None)
                        .into_iter()
                        .map(|s| s.object.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let namespace_labels = state
            .kinds
            .by_type("v1", "Namespace")
            .and_then(|k| {
                state
                    .store
                    .get(&k, "", write.namespace)
                    .map(|s| s.object.clone())
            })
            .and_then(|ns| {
                ns.pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
            })
            .unwrap_or_default();
        let old = (write.operation == "UPDATE")
            .then(|| {
                state
                    .store
                    .get(kind, write.namespace, meta_str(&object, "name"))
                    .map(|s| s.object.clone())
            })
            .flatten();
        (
            webhooks::hooks(&configs("MutatingWebhookConfiguration")),
            webhooks::hooks(&configs("ValidatingWebhookConfiguration")),
            namespace_labels,
            old,
        )
    };
    let attempt = Attempt {
        group: kind.group,
        version: kind.version,
        kind: kind.kind,
        plural: kind.plural,
        namespace: write.namespace,
        operation: write.operation,
        user: write.user,
        dry_run: write.dry_run,
        namespace_labels: &namespace_labels,
    };
    object = webhooks::mutate(&mutating, &attempt, &shared.services, object, old.as_ref()).await?;
    // Names are generated after mutating admission (rest.BeforeCreate): validating
    // webhooks see the name, mutating ones do not.
    if write.operation == "CREATE" && meta_str(&object, "name").is_empty() {
        let prefix = meta_str(&object, "generateName").to_string();
        if !prefix.is_empty() {
            object["metadata"]["name"] = Value::String(format!("{prefix}{}", random_suffix()));
        }
    }
    // Schema and object validation: the write, dry run.
    {
        let mut state = shared.lock();
        let mut opts = WriteOptions::new("admission");
        opts.dry_run = true;
        match write.operation {
            "CREATE" => state.create(kind, write.namespace, object.clone(), &opts)?,
            _ => {
                let name = meta_str(&object, "name").to_string();
                state.replace(kind, write.namespace, &name, object.clone(), &opts)?
            }
        };
    }
    webhooks::validate(
        &validating,
        &attempt,
        &shared.services,
        &object,
        old.as_ref(),
    )
    .await?;
    Ok(object)
}

/// Creates the pods controllers asked for (a Revision's), through admission, as the
/// ReplicaSet controller does; a refusal becomes a `FailedCreate` Warning Event on the
/// Revision, with the API server's message.
pub(crate) async fn create_pending_pods(shared: &Shared) {
    let (pending, pod_kind, event_kind) = {
        let mut state = shared.lock();
        (
            std::mem::take(&mut state.pending_pods),
            state.kinds.by_type("v1", "Pod"),
            state.kinds.by_type("v1", "Event"),
        )
    };
    let Some(pod_kind) = pod_kind else { return };
    for pod in pending {
        let namespace = meta_str(&pod, "namespace").to_string();
        let revision = pod
            .pointer("/metadata/labels/serving.knative.dev~1revision")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let write = Write {
            kind: pod_kind.clone(),
            namespace: &namespace,
            operation: "CREATE",
            user: "system:serviceaccount:kube-system:replicaset-controller",
            dry_run: false,
        };
        let result = match admit(shared, &write, pod).await {
            Ok(object) => shared
                .lock()
                .create(
                    &pod_kind,
                    &namespace,
                    object,
                    &WriteOptions::new("kube-controller-manager"),
                )
                .map(drop),
            Err(e) => Err(e),
        };
        if let (Err(e), Some(event_kind)) = (result, &event_kind) {
            tracing::debug!(%revision, error = %e.message, "pod not created");
            let event = serde_json::json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": format!("{revision}."), "namespace": namespace},
                "involvedObject": {"apiVersion": "serving.knative.dev/v1", "kind": "Revision", "name": revision, "namespace": namespace},
                "reason": "FailedCreate", "type": "Warning",
                "message": format!("Error creating: {}", e.message),
                "source": {"component": "replicaset-controller"},
            });
            let _ = shared.lock().create(
                event_kind,
                &namespace,
                event,
                &WriteOptions::new("kube-controller-manager"),
            );
        }
    }
}
