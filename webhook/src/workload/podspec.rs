//! The parts of a pod spec the policies read. Deliberately lenient (unknown fields are
//! ignored, container names optional) because Knative and KServe embed pod specs with
//! their own defaulting; type errors are reported with the field path.

use k8s_openapi::api::core::v1::{Probe, ResourceRequirements};
use serde::Deserialize;

use crate::image::Image;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    #[serde(default)]
    pub containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub ephemeral_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub volumes: Option<Vec<VolumeView>>,
    /// `Never`/`OnFailure` pods run to completion (Jobs): they serve nothing.
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub name: Option<String>,
    /// Parsed here, once, for every policy that reads it.
    pub image: Option<Image>,
    pub ports: Option<Vec<serde_json::Value>>,
    pub env: Option<Vec<EnvVarView>>,
    pub readiness_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub resources: Option<ResourceRequirements>,
    /// `Always` on an init container makes it a native sidecar.
    pub restart_policy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarView {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView {
    pub name: Option<String>,
    /// Image volumes (Kubernetes 1.31+): an OCI image mounted as a volume.
    pub image: Option<ImageVolumeView>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVolumeView {
    pub reference: Option<Image>,
}

impl ContainerView {
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .as_deref()?
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }
}

/// Reads a JSON value into `T`, naming the failing field relative to `base`.
///
/// Path tracking wraps every value it visits (a third of a pod spec's reading in
/// callgrind), so it only runs again when the plain read has failed, to say where.
pub fn read_at<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    base: &str,
) -> Result<T, String> {
    if let Ok(read) = T::deserialize(value) {
        return Ok(read);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            base.to_string()
        } else {
            format!("{base}.{inner}")
        };
        format!("{path}: {}", e.inner())
    })
}
