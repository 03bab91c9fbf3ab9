//! Kubernetes access: reads of the Service (and owning InferenceService), conditional
//! merge patches, and Events. Every call has a timeout; errors are classified so the
//! loop knows whether to re-read (409), retry (5xx, timeouts, resets) or stop (403).

use std::time::Duration;

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ObjectReference, Pod},
};
use kube::{
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::events::{Event, EventType, Recorder, Reporter},
    Api, Client,
};
use serde_json::Value;

use super::{
    kserve,
    view::{Subject, View},
};

/// Field manager of Guardrail's writes (visible in managedFields and audit logs).
pub const FIELD_MANAGER: &str = "guardrail";

/// A failed API call, by what the caller should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("forbidden: {0} (grant the RBAC listed in docs/guardrails.md)")]
    Forbidden(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rejected with {code}: {message}")]
    Rejected { code: u16, message: String },
    #[error("transient failure: {0}")]
    Transient(String),
}

impl ApiError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::Conflict(_) => "conflict",
            Self::NotFound(_) => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Transient(_) => "transient",
        }
    }

    fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => match s.code {
                403 => Self::Forbidden(s.message),
                404 => Self::NotFound(s.message),
                409 => Self::Conflict(s.message),
                429 | 500..=599 => Self::Transient(format!("{} {}", s.code, s.message)),
                code => Self::Rejected {
                    code,
                    message: s.message,
                },
            },
            // Transport: refused, reset, TLS, timeouts inside the client.
            other => Self::Transient(other.to_string()),
        }
    }
}

/// A pod of a revision, as the judge needs it: where its sidecar's admin port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPod {
    pub name: String,
    pub ip: String,
    pub admin_port: u16,
}

/// Name of the container port that marks a sidecar's admin listener on a pod.
pub const ADMIN_PORT_NAME: &str = "guardrail-admin";

/// The pods of `revision` among `pods` that can be peers: Knative's revision label,
/// created by the revision's ReplicaSet (`<revision>-deployment-…`, as controller),
/// an IP, and not finished. Labels and owner references can be written by anyone who
/// may create pods in the namespace: see docs/guardrails.md for what a forged peer can
/// do. The admin port is the container port named `guardrail-admin`, else `default_port`.
pub fn peer_pods(pods: &[Pod], revision: &str, default_port: u16) -> Vec<PeerPod> {
    let prefix = format!("{revision}-deployment-");
    pods.iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("serving.knative.dev/revision"))
                .is_some_and(|r| r == revision)
        })
        .filter(|p| {
            p.metadata.owner_references.iter().flatten().any(|o| {
                o.kind == "ReplicaSet" && o.controller == Some(true) && o.name.starts_with(&prefix)
            })
        })
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            let admin_port = p
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|port| port.name.as_deref() == Some(ADMIN_PORT_NAME))
                .and_then(|port| u16::try_from(port.container_port).ok())
                .unwrap_or(default_port);
            Some(PeerPod {
                name: p.metadata.name.clone()?,
                ip,
                admin_port,
            })
        })
        .collect()
}

/// The Kubernetes API as the guardrail loop uses it: behind a trait so the loop runs
/// against a fake on paused time in unit tests, and against [`KubeApi`] for real.
pub trait Cluster: Send + Sync + 'static {
    fn view(
        &self,
        service: &str,
    ) -> impl std::future::Future<Output = Result<View, ApiError>> + Send;
    fn patch(
        &self,
        subject: Subject,
        name: &str,
        patch: &Value,
    ) -> impl std::future::Future<Output = Result<Value, ApiError>> + Send;
    fn event(
        &self,
        subject: Subject,
        object: &Value,
        warning: bool,
        reason: &str,
        note: String,
    ) -> impl std::future::Future<Output = Result<(), ApiError>> + Send;
    /// `None` when the Lease does not exist.
    fn lease(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Option<Lease>, ApiError>> + Send;
    fn create_lease(
        &self,
        lease: &Lease,
    ) -> impl std::future::Future<Output = Result<Lease, ApiError>> + Send;
    /// A conditional replace (the Lease carries the resourceVersion it was read at).
    fn replace_lease(
        &self,
        lease: &Lease,
    ) -> impl std::future::Future<Output = Result<Lease, ApiError>> + Send;
    /// Pods labelled as `revision`'s.
    fn pods(
        &self,
        revision: &str,
    ) -> impl std::future::Future<Output = Result<Vec<Pod>, ApiError>> + Send;
}

/// The Kubernetes API as the guardrails use it, for one namespace.
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    namespace: String,
    timeout: Duration,
    recorder: Recorder,
}

fn resource(subject: Subject) -> ApiResource {
    match subject {
        Subject::KnativeService => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("serving.knative.dev", "v1", "Service"),
            "services",
        ),
        Subject::InferenceService => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(kserve::API_GROUP, "v1beta1", "InferenceService"),
            "inferenceservices",
        ),
    }
}

impl KubeApi {
    /// `pod` names the reporting instance of Events.
    pub fn new(client: Client, namespace: &str, timeout: Duration, pod: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "guardrail-sidecar".into(),
                instance: (!pod.is_empty()).then(|| pod.to_string()),
            },
        );
        Self {
            client,
            namespace: namespace.to_string(),
            timeout,
            recorder,
        }
    }

    fn api(&self, subject: Subject) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource(subject))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(ApiError::Transient(format!(
                "{what} timed out after {:?}",
                self.timeout
            ))),
        }
    }

    async fn get(&self, subject: Subject, name: &str) -> Result<Value, ApiError> {
        let api = self.api(subject);
        let obj = self.bounded("get", api.get(name)).await?;
        serde_json::to_value(obj).map_err(|e| ApiError::Transient(e.to_string()))
    }
}

impl Cluster for KubeApi {
    /// Reads the Knative Service `name` and, when KServe owns it, its InferenceService.
    async fn view(&self, service: &str) -> Result<View, ApiError> {
        let service = self.get(Subject::KnativeService, service).await?;
        let isvc = match kserve::owner(&service) {
            Some(owner) => Some(self.get(Subject::InferenceService, &owner).await?),
            None => None,
        };
        Ok(View { service, isvc })
    }

    /// Sends a merge patch (conditional when it carries `metadata.resourceVersion`);
    /// returns the object as written.
    async fn patch(&self, subject: Subject, name: &str, patch: &Value) -> Result<Value, ApiError> {
        let api = self.api(subject);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let obj = self
            .bounded("patch", api.patch(name, &params, &Patch::Merge(patch)))
            .await?;
        serde_json::to_value(obj).map_err(|e| ApiError::Transient(e.to_string()))
    }

    /// Records an Event on `object` (best effort: the caller logs a failure).
    async fn event(
        &self,
        subject: Subject,
        object: &Value,
        warning: bool,
        reason: &str,
        note: String,
    ) -> Result<(), ApiError> {
        let res = resource(subject);
        let field = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let reference = ObjectReference {
            api_version: Some(res.api_version.clone()),
            kind: Some(res.kind.clone()),
            name: field("/metadata/name"),
            namespace: Some(self.namespace.clone()),
            uid: field("/metadata/uid"),
            resource_version: field("/metadata/resourceVersion"),
            field_path: None,
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            // Events cap notes at 1 kB.
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_string(),
            secondary: None,
        };
        self.bounded("event", self.recorder.publish(&event, &reference))
            .await
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, ApiError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        self.bounded("get lease", api.get_opt(name)).await
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.bounded("create lease", api.create(&params, lease))
            .await
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = lease.metadata.name.clone().unwrap_or_default();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.bounded("replace lease", api.replace(&name, &params, lease))
            .await
    }

    async fn pods(&self, revision: &str) -> Result<Vec<Pod>, ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params =
            ListParams::default().labels(&format!("serving.knative.dev/revision={revision}"));
        let list = self.bounded("list pods", api.list(&params)).await?;
        Ok(list.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        name: &str,
        revision: &str,
        owner: &str,
        ip: &str,
        phase: &str,
        port: Option<i32>,
    ) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": { "serving.knative.dev/revision": revision },
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                      "uid": "u", "controller": true }],
            },
            "spec": { "containers": [{ "name": "guardrail", "ports": port.map(|p| vec![
                serde_json::json!({ "name": ADMIN_PORT_NAME, "containerPort": p })
            ]).unwrap_or_default() }] },
            "status": { "phase": phase, "podIP": ip },
        }))
        .expect("pod")
    }

    #[test]
    fn only_running_pods_of_the_revisions_replica_set_are_peers() {
        let rs = "m-00002-deployment-7d9f4";
        let pods = [
            pod("a", "m-00002", rs, "10.0.0.1", "Running", Some(9999)),
            pod("b", "m-00002", rs, "10.0.0.2", "Running", None),
            // Labelled as the revision's, but made by something else: not a peer.
            pod(
                "forged",
                "m-00002",
                "other-deployment-1",
                "10.0.0.3",
                "Running",
                None,
            ),
            // The ReplicaSet of another revision whose name shares the prefix.
            pod(
                "other",
                "m-00002",
                "m-000021-deployment-1",
                "10.0.0.4",
                "Running",
                None,
            ),
            pod("done", "m-00002", rs, "10.0.0.5", "Succeeded", None),
            pod("pending", "m-00002", rs, "", "Pending", None),
            pod(
                "stable",
                "m-00001",
                "m-00001-deployment-1",
                "10.0.0.6",
                "Running",
                None,
            ),
        ];
        let peers = peer_pods(&pods, "m-00002", 9095);
        assert_eq!(
            peers,
            [
                PeerPod {
                    name: "a".into(),
                    ip: "10.0.0.1".into(),
                    admin_port: 9999
                },
                PeerPod {
                    name: "b".into(),
                    ip: "10.0.0.2".into(),
                    admin_port: 9095
                },
            ]
        );
    }
}
