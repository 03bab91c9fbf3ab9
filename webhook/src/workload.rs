//! Reads any pod-making object (Pod, Deployment, …, Knative, KServe) into one shape: its
//! identity, the labels and annotations that reach its pods, and every pod spec, so the
//! policies never care which kind they look at.

mod kind;
mod knative;
mod kserve;
pub mod podspec;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::image::Image;

pub use kind::WorkloadKind;
pub use knative::QUEUE_PROXY;
pub use podspec::{ContainerView, PodSpecView};

use podspec::read_at;

/// How the controller that owns a pod spec treats it (names, probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A plain Kubernetes pod spec.
    Plain,
    /// A Knative revision template: unnamed containers become `user-container`.
    KnativeTemplate,
    /// A pod made by Knative's revision reconciler: queue-proxy runs the readiness probe.
    KnativePod,
    /// A KServe component (predictor, transformer, explainer).
    KServeComponent,
}

/// One pod spec inside a workload.
#[derive(Debug, Clone)]
pub struct PodUnit {
    /// Field path of the pod spec, e.g. `spec.template.spec`.
    pub path: String,
    pub spec: PodSpecView,
    pub flavor: Flavor,
}

/// What a container is for: only regular containers serve traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Regular,
    Init,
    Ephemeral,
}

/// A container with where it sits in the object.
#[derive(Debug, Clone)]
pub struct ContainerSite<'a> {
    pub name: String,
    /// e.g. `spec.template.spec.containers[0]`
    pub path: String,
    pub role: Role,
    pub spec: &'a ContainerView,
    /// In a Knative pod, the user container's readiness probe as queue-proxy runs it.
    pub delegated_readiness: Option<k8s_openapi::api::core::v1::Probe>,
    pub flavor: Flavor,
    /// The pod runs to completion (`restartPolicy: Never`/`OnFailure`, i.e. a Job).
    pub runs_to_completion: bool,
    /// Index of its pod spec in [`Workload::pods`].
    pub pod: usize,
}

impl ContainerSite<'_> {
    /// Knative's queue-proxy in a pod Knative built. Whether its image really is the
    /// cluster's is the engine's call (`scope.queueProxyImages`), which demotes the pod
    /// to [`Flavor::Plain`] when it is not.
    pub fn is_knative_queue_proxy(&self) -> bool {
        // Only the regular container: an init or ephemeral container of that name is the
        // author's (the API server forbids the clash; `check` sees unvalidated files).
        self.flavor == Flavor::KnativePod
            && self.role == Role::Regular
            && self.name == knative::QUEUE_PROXY
    }
}

/// One image the object would pull, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub image: Image,
    /// Container name, or `volume <name>` for an image volume.
    pub container: String,
    /// e.g. `spec.containers[1].image`
    pub field: String,
}

impl ImageUse {
    /// The image a container runs.
    pub fn of(site: &ContainerSite<'_>) -> Self {
        Self {
            image: site.spec.image.clone().unwrap_or_else(Image::absent),
            container: site.name.clone(),
            field: format!("{}.image", site.path),
        }
    }
}

/// A workload read from an admission request or a manifest.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: Option<String>,
    /// The labels that reach the pods: the pod template's (the object's own for kinds
    /// without a template). Scope decisions use these, so an exemption or selector means
    /// the same at every level; a label only on a Deployment would exempt the Deployment
    /// and leave its pods to be denied later, where nobody looks.
    pub labels: BTreeMap<String, String>,
    /// Object annotations overlaid with pod-template annotations.
    pub annotations: BTreeMap<String, String>,
    pub pods: Vec<PodUnit>,
    /// Images named outside pod specs (KServe model-format `image` overrides).
    pub extra_images: Vec<ImageUse>,
}

/// Why an object cannot be read; becomes a denial that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {kind} {name}: {message}")]
pub struct ObjectError {
    pub kind: String,
    pub name: String,
    pub message: String,
}

impl Workload {
    /// Reads `object` as a `kind`.
    pub fn read(kind: WorkloadKind, object: &Value) -> Result<Self, ObjectError> {
        let meta = object.get("metadata");
        let name = meta
            .and_then(|m| m.get("name").and_then(Value::as_str))
            .map(str::to_string)
            .or_else(|| {
                meta.and_then(|m| m.get("generateName").and_then(Value::as_str))
                    .map(|g| format!("{g}*"))
            })
            .unwrap_or_else(|| "<unnamed>".to_string());
        let fail = |message: String| ObjectError {
            kind: kind.kind().to_string(),
            name: name.clone(),
            message,
        };
        if !object.is_object() {
            return Err(fail("the object is not a JSON object".into()));
        }
        let namespace = meta
            .and_then(|m| m.get("namespace").and_then(Value::as_str))
            .map(str::to_string);
        let template = kind.template_metadata_path();
        let in_template = |leaf: &'static str| [template, &[leaf]].concat();
        let labels = string_map(object, &in_template("labels")).map_err(&fail)?;
        let mut annotations = string_map(object, &["metadata", "annotations"]).map_err(&fail)?;
        if template != ["metadata"] {
            annotations.extend(string_map(object, &in_template("annotations")).map_err(&fail)?);
        }

        let mut pods = Vec::new();
        for (path, required) in kind.pod_spec_paths() {
            let dotted = path.join(".");
            let Some(value) = lookup(object, path).filter(|v| !v.is_null()) else {
                if *required {
                    return Err(fail(format!("{dotted} is missing")));
                }
                continue;
            };
            let spec: PodSpecView = read_at(value, &dotted).map_err(&fail)?;
            let flavor = match kind {
                k if k.is_knative() => Flavor::KnativeTemplate,
                WorkloadKind::InferenceService => Flavor::KServeComponent,
                // Knative's reconciler makes a Deployment; its ReplicaSets and Pods carry
                // the same template, so all three are judged the way Knative lays it out.
                WorkloadKind::Pod | WorkloadKind::Deployment | WorkloadKind::ReplicaSet
                    if knative::is_revision_pod(&labels, &spec) =>
                {
                    Flavor::KnativePod
                }
                _ => Flavor::Plain,
            };
            pods.push(PodUnit {
                path: dotted,
                spec,
                flavor,
            });
        }
        let extra_images = match kind {
            WorkloadKind::InferenceService => kserve::model_images(object).map_err(&fail)?,
            _ => Vec::new(),
        };
        Ok(Self {
            kind,
            name,
            namespace,
            labels,
            annotations,
            pods,
            extra_images,
        })
    }

    /// Every container of every pod spec, with its path and effective name.
    pub fn containers(&self) -> Vec<ContainerSite<'_>> {
        let mut sites = Vec::new();
        for (pod_index, pod) in self.pods.iter().enumerate() {
            let runs_to_completion = matches!(
                pod.spec.restart_policy.as_deref(),
                Some("Never" | "OnFailure")
            );
            let lists = [
                ("containers", Role::Regular, &pod.spec.containers),
                ("initContainers", Role::Init, &pod.spec.init_containers),
                (
                    "ephemeralContainers",
                    Role::Ephemeral,
                    &pod.spec.ephemeral_containers,
                ),
            ];
            for (field, role, list) in lists {
                let list = list.as_deref().unwrap_or_default();
                for (i, c) in list.iter().enumerate() {
                    sites.push(ContainerSite {
                        name: default_name(pod.flavor, role, c, i, list.len()),
                        path: format!("{}.{field}[{i}]", pod.path),
                        role,
                        spec: c,
                        delegated_readiness: None,
                        flavor: pod.flavor,
                        runs_to_completion,
                        pod: pod_index,
                    });
                }
            }
            if pod.flavor == Flavor::KnativePod {
                knative::attach_queue_proxy_readiness(&pod.spec, &mut sites);
            }
        }
        sites
    }

    /// Every image the object would pull: containers of all kinds, image volumes, and
    /// images named outside pod specs.
    pub fn images(&self, containers: &[ContainerSite<'_>]) -> Vec<ImageUse> {
        let mut images: Vec<ImageUse> = containers.iter().map(ImageUse::of).collect();
        for pod in &self.pods {
            for (i, v) in pod
                .spec
                .volumes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some(image) = &v.image {
                    images.push(ImageUse {
                        image: image.reference.clone().unwrap_or_else(Image::absent),
                        container: format!("volume {}", v.name.as_deref().unwrap_or("?")),
                        field: format!("{}.volumes[{i}].image.reference", pod.path),
                    });
                }
            }
        }
        images.extend(self.extra_images.iter().cloned());
        images
    }
}

/// Container names as the owning controller assigns them when the author left them out.
fn default_name(flavor: Flavor, role: Role, c: &ContainerView, i: usize, count: usize) -> String {
    if let Some(name) = c.name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    match (flavor, role) {
        // Knative's defaulting: `user-container`, or `user-container-<i>` for several.
        (Flavor::KnativeTemplate, Role::Regular) if count == 1 => "user-container".into(),
        (Flavor::KnativeTemplate, Role::Regular) => format!("user-container-{i}"),
        // KServe names its first (serving) container `kserve-container`.
        (Flavor::KServeComponent, Role::Regular) if i == 0 => "kserve-container".into(),
        _ => format!("#{i}"),
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn string_map(object: &Value, path: &[&str]) -> Result<BTreeMap<String, String>, String> {
    match lookup(object, path) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => read_at(v, &path.join(".")),
    }
}

#[cfg(test)]
mod tests;
