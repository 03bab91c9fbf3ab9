//! Sidecar injection: what `/mutate` and `guardrail-webhook inject` do to a pod.
//!
//! Pure: one pod (as received, a JSON value) in, a JSON Patch of targeted operations
//! out, so fields our types do not know survive. Two layouts are handled:
//!
//! - **Knative (and KServe serverless) pods**, recognised by their `queue-proxy`:
//!   queue-proxy forwards to `127.0.0.1:$USER_PORT` and probes the user container from
//!   `SERVING_READINESS_PROBE` (`pkg/reconciler/revision/resources/queue.go` in
//!   knative/serving). The sidecar takes over `USER_PORT`, forwards to the port it had
//!   (the model, or KServe's agent on 9081), and the user container's probe entry is
//!   moved into the sidecar, which answers `/readyz` on its admin port only when that
//!   probe passes: queue-proxy keeps gating traffic on the model (KServe's own agent
//!   injector rewrites only `USER_PORT`, kserve#5569).
//! - **Plain pods** with a named serving port: the port's name moves to the sidecar, so
//!   a Service that targets it by name reaches the sidecar first.
//!
//! Injection is idempotent: a pod that already has our container gets an empty patch,
//! except that when another webhook changed `USER_PORT` after us, our upstream follows
//! it and `USER_PORT` points back to us (the order ours/KServe's/Istio's converges).

pub mod command;
pub mod config;
mod container;
mod knative;
mod patch;

use serde_json::Value;

pub use config::InjectionConfig;
use container::Sidecar;
pub use knative::UPSTREAM_PROBE_ENV;
use patch::Ops;

use crate::{error::ConfigError, image::ImageRef, workload::QUEUE_PROXY};

/// Pod label that opts a pod in (`"true"`) or out (`"false"`).
pub const INJECT_LABEL: &str = "guardrail.dev/inject";
/// Namespace label value (`guardrail.dev/inject=enabled`) that opts a namespace in.
pub const NAMESPACE_ENABLED: &str = "enabled";
/// Pod annotation asking for a native sidecar (init container, `restartPolicy: Always`).
pub const NATIVE_SIDECAR_ANNOTATION: &str = "guardrail.dev/native-sidecar";
/// Pod annotation naming the container port a plain pod serves on.
pub const SERVING_PORT_ANNOTATION: &str = "guardrail.dev/serving-port";
/// Pod annotations wiring a pod without queue-proxy by hand: the sidecar listens on
/// the first (a Service the user controls targets it) and forwards to the second.
pub const LISTEN_PORT_ANNOTATION: &str = "guardrail.dev/listen-port";
pub const UPSTREAM_PORT_ANNOTATION: &str = "guardrail.dev/upstream-port";
/// Label KServe puts on the pods of an InferenceService.
const KSERVE_LABEL: &str = "serving.kserve.io/inferenceservice";
/// Where the ServiceAccount admission plugin mounts the API token.
pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Ports the sidecar never takes: Knative's queue-proxy (8012 HTTP, 8013 h2c, 8022
/// admin, 8112 HTTPS, 9090/9091 metrics, 8008 profiling), KServe's agent, batcher and
/// puller (9081, 9083, 9088), and Istio's 15000–15090.
const RESERVED_PORTS: &[u16] = &[8008, 8012, 8013, 8022, 8112, 9081, 9083, 9088, 9090, 9091];
const ISTIO_PORTS: std::ops::RangeInclusive<u16> = 15000..=15090;
/// How far above the preferred port a free one is searched for.
const PORT_SEARCH: u16 = 200;

/// What injection did, as the `result` label of `guardrail_injections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar was added.
    Injected,
    /// Already there; our upstream followed a `USER_PORT` another webhook changed.
    Updated,
    /// Already there and wired: empty patch.
    Unchanged,
    /// Not opted in (the CLI without `--all`), or opted out with the label.
    NotSelected,
    /// The namespace is in `scope.exemptNamespaces`.
    Exempt,
    /// `hostNetwork` pods share the node's ports: nothing is injected.
    HostNetwork,
    /// Something in the pod prevents a correct injection: admitted without it.
    Conflict,
    /// `injection.image` is not set.
    NotConfigured,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Injected,
        Outcome::Updated,
        Outcome::Unchanged,
        Outcome::NotSelected,
        Outcome::Exempt,
        Outcome::HostNetwork,
        Outcome::Conflict,
        Outcome::NotConfigured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::NotSelected => "not_selected",
            Outcome::Exempt => "exempt",
            Outcome::HostNetwork => "host_network",
            Outcome::Conflict => "conflict",
            Outcome::NotConfigured => "not_configured",
        }
    }
}

/// The result of injecting one pod.
#[derive(Debug, Clone)]
pub struct Injection {
    pub outcome: Outcome,
    /// Empty unless the outcome is `Injected` or `Updated`.
    pub patch: json_patch::Patch,
    /// For the AdmissionResponse (and stderr of `inject`).
    pub warnings: Vec<String>,
}

impl Injection {
    fn nothing(outcome: Outcome) -> Self {
        Self {
            outcome,
            patch: json_patch::Patch(Vec::new()),
            warnings: Vec::new(),
        }
    }

    fn warn(outcome: Outcome, warning: String) -> Self {
        Self {
            warnings: vec![format!("Guardrail sidecar not injected: {warning}")],
            ..Self::nothing(outcome)
        }
    }
}

/// Where the pod is seen.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The caller already selected this pod (the webhook: the API server matched a
    /// selector). Otherwise only the `guardrail.dev/inject: "true"` label selects it.
    /// A `"false"` label opts out either way.
    pub selected: bool,
    /// The request's namespace (wins over the object's).
    pub namespace: Option<&'a str>,
    /// A Pod at admission (the ServiceAccount plugin has already mounted the token in
    /// the other containers) rather than a pod template (it will mount it in ours too).
    pub at_admission: bool,
}

/// A compiled `injection:` section.
#[derive(Debug, Clone)]
pub struct Injector {
    config: InjectionConfig,
    image: Option<ImageRef>,
    /// `injection.sidecarConfig`, validated, as the sidecar reads it.
    sidecar_config: Option<String>,
    exempt_namespaces: Vec<String>,
    warmup_annotation: String,
}

impl Injector {
    pub fn new(
        config: InjectionConfig,
        exempt_namespaces: Vec<String>,
        warmup_annotation: String,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let image = config.parsed_image()?;
        let sidecar_config = config
            .sidecar_config
            .as_ref()
            .map(|c| config.sidecar_config_text(c))
            .transpose()?;
        Ok(Self {
            config,
            image,
            sidecar_config,
            exempt_namespaces,
            warmup_annotation,
        })
    }

    pub fn config(&self) -> &InjectionConfig {
        &self.config
    }

    /// A container that is Guardrail's sidecar: our name and an image from our
    /// repository (any digest: pods keep the version they were injected with). Never
    /// by name alone, since anyone writing a pod chooses its names.
    pub fn is_ours(&self, name: Option<&str>, image: Option<&ImageRef>) -> bool {
        let (Some(ours), Some(name), Some(image)) = (&self.image, name, image) else {
            return false;
        };
        name == self.config.container_name && image.repository() == ours.repository()
    }

    /// Injects into the pod at JSON pointer `base` (tokens) of the object. `pod` is
    /// the value at `base`: a Pod, or a pod template (`metadata` and `spec`).
    pub fn inject(&self, pod: &Value, base: &[&str], ctx: &Context<'_>) -> Injection {
        let metadata = pod.get("metadata");
        let label = metadata
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(INJECT_LABEL))
            .and_then(Value::as_str);
        if label == Some("false") || !(ctx.selected || label == Some("true")) {
            return Injection::nothing(Outcome::NotSelected);
        }
        let namespace = ctx.namespace.or_else(|| {
            metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
        });
        if namespace.is_some_and(|n| self.exempt_namespaces.iter().any(|e| e == n)) {
            return Injection::nothing(Outcome::Exempt);
        }
        let Some(image) = &self.config.image else {
            return Injection::warn(
                Outcome::NotConfigured,
                "injection.image is not set in the webhook config (set it to the sidecar \
                 image by digest, e.g. with the chart's injection.image values)"
                    .into(),
            );
        };
        let Some(spec) = pod.get("spec").filter(|s| s.is_object()) else {
            return Injection::warn(Outcome::Conflict, "the pod has no spec".into());
        };
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            return Injection::warn(
                Outcome::HostNetwork,
                "hostNetwork pods share the node's ports, so the sidecar's ports could \
                 collide with anything on the node"
                    .into(),
            );
        }
        match self.plan(pod, spec, base, image, ctx.at_admission) {
            Ok(injection) => injection,
            Err(why) => Injection::warn(Outcome::Conflict, why),
        }
    }

    fn plan(
        &self,
        pod: &Value,
        spec: &Value,
        base: &[&str],
        image: &str,
        at_admission: bool,
    ) -> Result<Injection, String> {
        let name = &self.config.container_name;
        let containers = list(spec, "containers");
        let named = |field: &'static str| {
            let found = list(spec, field)
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(name));
            found.map(|i| (field, i))
        };
        let queue_proxy = containers
            .iter()
            .position(|c| c.get("name").and_then(Value::as_str) == Some(QUEUE_PROXY));
        if let Some((field, index)) = named("containers").or_else(|| named("initContainers")) {
            let existing = &list(spec, field)[index];
            let text = |k: &str| existing.get(k).and_then(Value::as_str);
            if !self.is_ours(
                text("name"),
                text("image").and_then(|i| ImageRef::parse(i).ok()).as_ref(),
            ) {
                return Err(format!(
                    "a container named {name:?} is already in the pod and its image is not \
                     from {} (rename that container, or set injection.containerName)",
                    self.image
                        .as_ref()
                        .map(ImageRef::repository)
                        .unwrap_or_default()
                ));
            }
            return match queue_proxy {
                Some(qp) => knative::follow(spec, base, qp, (field, index), existing),
                None => Ok(Injection::nothing(Outcome::Unchanged)),
            };
        }

        let kserve_raw = pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(KSERVE_LABEL))
            .is_some();
        let explicit = container::explicit_ports(pod)?;
        if queue_proxy.is_none() && kserve_raw && explicit.is_none() {
            return Err(format!(
                "a KServe RawDeployment pod: KServe's Service targets the model's port by \
                 number (service_reconciler.go), so traffic would bypass the sidecar. Either \
                 annotate {LISTEN_PORT_ANNOTATION} and {UPSTREAM_PORT_ANNOTATION} and point a \
                 Service you control at the listen port, or use KServe's Serverless mode \
                 (canaries with guardrails need it)"
            ));
        }
        let mut ops = Ops::new(base);
        let (layout, mut warnings) = match queue_proxy {
            Some(qp) => {
                let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
                knative::layout(spec, labels, qp, &self.config, &mut ops)?
            }
            None => match explicit {
                Some((listen, upstream)) => {
                    container::explicit_layout(spec, listen, upstream, &self.config)?
                }
                None => container::plain_layout(pod, spec, &self.config, &mut ops)?,
            },
        };
        // At admission the ServiceAccount plugin has run: a container added by a webhook
        // gets no token unless we copy the mount. A template gets it from the plugin.
        let token = container::token_mount(containers);
        let no_automount = spec
            .get("automountServiceAccountToken")
            .and_then(Value::as_bool)
            == Some(false);
        let measure_only = no_automount || (at_admission && token.is_none());
        if measure_only {
            warnings.push(
                "Guardrail sidecar injected in measure-only mode: the pod mounts no service \
                 account token (automountServiceAccountToken: false?), so it cannot roll \
                 back or promote; allow the token to enable guardrails"
                    .into(),
            );
        }
        let native = pod
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(NATIVE_SIDECAR_ANNOTATION))
            .and_then(Value::as_str)
            == Some("true");
        let sidecar = Sidecar {
            config: &self.config,
            image,
            layout: &layout,
            token,
            measure_only,
            native,
            warmup_annotation: &self.warmup_annotation,
            sidecar_config: self.sidecar_config.as_deref(),
        };
        let value = sidecar.render();
        if native {
            ops.append(
                &["spec", "initContainers"],
                spec.get("initContainers"),
                value,
            );
        } else {
            ops.append(&["spec", "containers"], spec.get("containers"), value);
        }
        Ok(Injection {
            outcome: Outcome::Injected,
            patch: ops.into_patch(),
            warnings,
        })
    }
}

fn list<'a>(spec: &'a Value, field: &str) -> &'a [Value] {
    spec.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The port numbers a pod already uses: every declared container port.
fn declared_ports(spec: &Value) -> Vec<u16> {
    (list(spec, "containers")
        .iter()
        .chain(list(spec, "initContainers")))
    .flat_map(|c| list(c, "ports"))
    .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
    .filter_map(|p| u16::try_from(p).ok())
    .collect()
}

/// The preferred port, or the next one above it that is free and not reserved.
fn free_port(preferred: u16, used: &[u16]) -> Option<u16> {
    (preferred..=preferred.saturating_add(PORT_SEARCH))
        .find(|p| !used.contains(p) && !RESERVED_PORTS.contains(p) && !ISTIO_PORTS.contains(p))
}

/// Chooses the proxy and admin ports.
fn choose_ports(config: &InjectionConfig, mut used: Vec<u16>) -> Result<(u16, u16), String> {
    let none = |what: &str, from: u16| {
        format!(
            "no free {what} port in {from}..={} (set injection.{what}Port to a free one)",
            from.saturating_add(PORT_SEARCH)
        )
    };
    let proxy =
        free_port(config.listen_port, &used).ok_or_else(|| none("listen", config.listen_port))?;
    used.push(proxy);
    let admin =
        free_port(config.admin_port, &used).ok_or_else(|| none("admin", config.admin_port))?;
    Ok((proxy, admin))
}

#[cfg(test)]
mod tests;
