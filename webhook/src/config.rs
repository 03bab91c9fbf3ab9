//! The policy configuration file: one YAML document, every field optional with a
//! documented default, unknown fields rejected, and a `validate()` whose errors name the
//! field. The same struct drives `serve` and `check`.

pub mod reload;
mod selector;

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

pub use selector::LabelSelector;

use crate::error::ConfigError;

/// `apiVersion` and `kind` a config file may declare.
pub const CONFIG_API_VERSION: &str = "guardrail.dev/v1alpha1";
pub const CONFIG_KIND: &str = "GuardrailConfig";
/// Annotation with which a workload declares how long its model takes to warm up.
pub const DEFAULT_WARMUP_ANNOTATION: &str = "guardrail.dev/warmup-seconds";
/// Shown with a TCP-only readiness violation; overridable with `policies.probes.readinessHint`.
pub const DEFAULT_READINESS_HINT: &str = "probe the model server's ready endpoint instead: \
httpGet on /v2/health/ready (KServe v2 / Triton), /v1/models/<name> (KServe v1, TF Serving) \
or a grpc probe";
/// Containers that are not serving containers: the probes and resources policies skip them.
pub const DEFAULT_SIDECAR_CONTAINERS: &[&str] =
    &["istio-proxy", "linkerd-proxy", "guardrail-sidecar"];
/// Repositories (globs over the normalised reference without tag or digest) that
/// Knative's queue-proxy may come from: Knative's release images.
pub const DEFAULT_QUEUE_PROXY_IMAGES: &[&str] =
    &["gcr.io/knative-releases/knative.dev/serving/cmd/queue"];
/// Repositories of platform sidecars that pods get from the platform, not the author:
/// KServe's agent (logger, batcher), which its own pod mutator adds.
pub const DEFAULT_PLATFORM_SIDECAR_IMAGES: &[&str] = &["docker.io/kserve/agent"];
/// Namespaces never checked, so a bad policy can never lock the control plane out.
pub const DEFAULT_EXEMPT_NAMESPACES: &[&str] = &["kube-system"];

/// The whole configuration file.
// Deliberately only Deserialize: sections owned by other modules (e.g. `signatures`)
// can be added as one more field without deriving anything else.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Optional `guardrail.dev/v1alpha1`, so the file reads as a typed manifest (and
    /// `check` skips it when it sits among workloads).
    pub api_version: Option<String>,
    /// Optional `GuardrailConfig`.
    pub kind: Option<String>,
    /// `enforce` (default): enforced violations deny. `audit`: nothing is denied; every
    /// violation comes back as an admission warning.
    pub mode: Mode,
    pub policies: Policies,
    pub scope: Scope,
    /// Image signature rules (cosign keys, keyless identities), registries, cache and
    /// budget: see docs/signatures.md. Default: no rules, nothing verified.
    pub signatures: crate::signatures::SignaturesConfig,
    /// The sidecar `/mutate` injects (image by digest, ports, resources): see
    /// docs/injection.md. Default: no image, nothing injected.
    pub injection: crate::inject::InjectionConfig,
}

/// Global mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// What one policy does with its violations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Violations deny the request.
    Enforce,
    /// Violations are returned as warnings.
    Audit,
    /// The policy does not run.
    Off,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policies {
    pub digest: DigestPolicy,
    pub probes: ProbesPolicy,
    pub resources: ResourcesPolicy,
    pub signatures: SignaturesPolicy,
}

/// Every image must be pinned by digest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DigestPolicy {
    /// Default `enforce`.
    pub mode: PolicyMode,
}

impl Default for DigestPolicy {
    fn default() -> Self {
        Self {
            mode: PolicyMode::Enforce,
        }
    }
}

/// Serving containers need readiness and liveness probes that fit a model server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProbesPolicy {
    /// Default `enforce`.
    pub mode: PolicyMode,
    /// Accept a readiness probe that only opens a TCP socket. Default `false`: a port
    /// that accepts connections says nothing about a loaded model.
    pub allow_tcp_readiness: bool,
    /// Fix shown with a TCP-only readiness violation.
    pub readiness_hint: String,
    /// Annotation (on the object or its pod template) holding the warm-up in seconds.
    pub warmup_annotation: String,
}

impl Default for ProbesPolicy {
    fn default() -> Self {
        Self {
            mode: PolicyMode::Enforce,
            allow_tcp_readiness: false,
            readiness_hint: DEFAULT_READINESS_HINT.to_string(),
            warmup_annotation: DEFAULT_WARMUP_ANNOTATION.to_string(),
        }
    }
}

/// Serving containers declare CPU and memory requests and a memory limit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourcesPolicy {
    /// Default `audit`.
    pub mode: PolicyMode,
}

impl Default for ResourcesPolicy {
    fn default() -> Self {
        Self {
            mode: PolicyMode::Audit,
        }
    }
}

/// Images must be signed as the `signatures:` rules say (only runs when a rule exists).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SignaturesPolicy {
    /// Default `enforce`. `audit` turns signature denials into warnings while rolling
    /// out; `off` skips verification (no registry is contacted).
    pub mode: PolicyMode,
}

impl Default for SignaturesPolicy {
    fn default() -> Self {
        Self {
            mode: PolicyMode::Enforce,
        }
    }
}

/// Which objects, containers and images are checked at all.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Scope {
    /// Only objects whose pod labels (the pod template's; the object's own for Pods,
    /// Revisions and InferenceServices) match are checked.
    /// Default: none, i.e. everything that reaches the webhook.
    pub selector: Option<LabelSelector>,
    /// Namespaces never checked. Default `[kube-system]`.
    pub exempt_namespaces: Vec<String>,
    /// An object carrying any of these labels (same key and value) is not checked.
    pub exempt_labels: BTreeMap<String, String>,
    /// Containers (by name) that every policy skips. Default none. The workload author
    /// chooses container names, so anyone can claim an exempt name: prefer `exemptImages`.
    pub exempt_containers: Vec<String>,
    /// Where Knative's queue-proxy image may come from: globs over the normalised
    /// repository (no tag or digest), e.g. `gcr.io/knative-releases/knative.dev/serving/
    /// cmd/queue`. In a pod Knative built (label `serving.knative.dev/revision`, a
    /// `queue-proxy` container) whose queue-proxy image matches, queue-proxy is the
    /// cluster's container: no probes, resources or signature checks (digest pinning
    /// still applies) and it runs the user container's readiness probe. A queue-proxy
    /// from anywhere else gets no exemption and the pod is judged as a plain pod.
    /// Default: Knative's release repository; add your mirror if you mirror it.
    pub queue_proxy_images: Vec<String>,
    /// Containers that are not serving containers: probes and resources skip them, the
    /// digest policy still applies. Default `[istio-proxy, linkerd-proxy, guardrail-sidecar]`.
    pub sidecar_containers: Vec<String>,
    /// Globs over normalised repositories (no tag or digest) of sidecars the platform
    /// adds, trusted by image and never by name: KServe's agent. Such a container is
    /// not a serving container (no probes or resources checks) and its signature is
    /// the platform's business, like queue-proxy's; its digest is still required.
    /// Default `[docker.io/kserve/agent]`; add your mirror if you mirror it.
    pub platform_sidecar_images: Vec<String>,
    /// Globs over normalised image references (`docker.io/library/nginx:1.25`) that the
    /// image policies skip. `*` stays within one path segment, `**` crosses them.
    pub exempt_images: Vec<String>,
}

impl Default for Scope {
    fn default() -> Self {
        let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        Self {
            selector: None,
            exempt_namespaces: owned(DEFAULT_EXEMPT_NAMESPACES),
            exempt_labels: BTreeMap::new(),
            exempt_containers: Vec::new(),
            queue_proxy_images: owned(DEFAULT_QUEUE_PROXY_IMAGES),
            sidecar_containers: owned(DEFAULT_SIDECAR_CONTAINERS),
            platform_sidecar_images: owned(DEFAULT_PLATFORM_SIDECAR_IMAGES),
            exempt_images: Vec::new(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates YAML (or JSON) text. An empty document means all defaults.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: None,
                message: e.to_string(),
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: globs compile, selectors are well-formed, names non-empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid { field, message };
        let expect = [
            ("apiVersion", &self.api_version, CONFIG_API_VERSION),
            ("kind", &self.kind, CONFIG_KIND),
        ];
        for (field, value, want) in expect {
            if let Some(value) = value.as_deref().filter(|v| *v != want) {
                return Err(invalid(
                    field.into(),
                    format!("is {value:?}; must be {want:?} or left out"),
                ));
            }
        }
        let probes = &self.policies.probes;
        if probes.warmup_annotation.trim().is_empty() {
            return Err(invalid(
                "policies.probes.warmupAnnotation".into(),
                "must name an annotation, e.g. guardrail.dev/warmup-seconds".into(),
            ));
        }
        let lists = [
            ("scope.exemptNamespaces", &self.scope.exempt_namespaces),
            ("scope.exemptContainers", &self.scope.exempt_containers),
            ("scope.sidecarContainers", &self.scope.sidecar_containers),
            ("scope.exemptImages", &self.scope.exempt_images),
            ("scope.queueProxyImages", &self.scope.queue_proxy_images),
            (
                "scope.platformSidecarImages",
                &self.scope.platform_sidecar_images,
            ),
        ];
        for (field, list) in lists {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err(invalid(format!("{field}[{i}]"), "must not be empty".into()));
            }
        }
        let globs = [
            ("scope.exemptImages", &self.scope.exempt_images),
            ("scope.queueProxyImages", &self.scope.queue_proxy_images),
            (
                "scope.platformSidecarImages",
                &self.scope.platform_sidecar_images,
            ),
        ];
        for (field, list) in globs {
            for (i, glob) in list.iter().enumerate() {
                // Matched against normalised references only, so a short form such as
                // `nginx:*` would silently match nothing: refuse it with the fix.
                let first = glob.split('/').next().unwrap_or_default();
                let hostish =
                    first.contains(['.', ':', '*', '?', '[', '{']) || first == "localhost";
                if !hostish || !glob.contains('/') {
                    return Err(invalid(
                        format!("{field}[{i}]"),
                        format!(
                            "{glob:?} is not a normalised reference: start with the registry \
                             host, e.g. \"docker.io/library/nginx:*\" for nginx"
                        ),
                    ));
                }
                image_glob(glob).map_err(|e| {
                    invalid(
                        format!("{field}[{i}]"),
                        format!("{glob:?} is not a valid glob: {e}"),
                    )
                })?;
            }
        }
        if let Some(selector) = &self.scope.selector {
            selector
                .validate()
                .map_err(|(field, message)| invalid(format!("scope.selector.{field}"), message))?;
        }
        self.signatures.validate().map_err(ConfigError::from)?;
        self.injection.validate()?;
        Ok(())
    }
}

/// Compiles an `exemptImages` glob: `*` does not cross `/`, `**` does.
pub fn image_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
}

#[cfg(test)]
mod tests;
