//! The policy engine: one workload in, one verdict out. Shared by the server and `check`.
//!
//! Evaluation first collects every container and image of the object with its location,
//! then runs the image policies (async, over all images at once) and the container
//! policies (over each serving container). A new image policy is one more entry in
//! `image_policies`.

mod build;
mod verdict;

use std::sync::Arc;

use globset::{GlobSet, GlobSetBuilder};

pub use build::EngineOptions;
pub use verdict::{Finding, Verdict};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{
    config::{image_glob, Config, Mode, PolicyMode},
    error::ConfigError,
    image::Image,
    inject::{Injector, UPSTREAM_PROBE_ENV},
    policy::{digest::DigestPolicy, probes, resources, ImagePolicy, PolicyName, Violation},
    workload::{ContainerSite, Flavor, ImageUse, PodUnit, Role, Workload, QUEUE_PROXY},
};

/// A compiled configuration, ready to judge workloads.
pub struct Engine {
    config: Config,
    exempt_images: GlobSet,
    queue_proxy_images: GlobSet,
    platform_sidecar_images: GlobSet,
    injector: Injector,
    image_policies: Vec<Arc<dyn ImagePolicy>>,
}

impl Engine {
    /// An engine with the built-in policies. A config with signature rules is refused
    /// here, so no caller can drop signature verification by accident: those need
    /// registry credentials and metrics, see [`Engine::build`].
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if !config.signatures.rules.is_empty() {
            return Err(ConfigError::Invalid {
                field: "signatures.rules".into(),
                message: "need a signature verifier: build this engine with Engine::build".into(),
            });
        }
        Self::compile(config)
    }

    fn compile(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let exempt_images = glob_set("scope.exemptImages", &config.scope.exempt_images)?;
        let queue_proxy_images =
            glob_set("scope.queueProxyImages", &config.scope.queue_proxy_images)?;
        let platform_sidecar_images = glob_set(
            "scope.platformSidecarImages",
            &config.scope.platform_sidecar_images,
        )?;
        let injector = Injector::new(
            config.injection.clone(),
            config.scope.exempt_namespaces.clone(),
            config.policies.probes.warmup_annotation.clone(),
        )?;
        Ok(Self {
            config,
            exempt_images,
            queue_proxy_images,
            platform_sidecar_images,
            injector,
            image_policies: vec![Arc::new(DigestPolicy)],
        })
    }

    /// Adds an image policy (e.g. signature verification), run after the built-in ones.
    pub fn with_image_policy(mut self, policy: Arc<dyn ImagePolicy>) -> Self {
        self.image_policies.push(policy);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The sidecar injector of this configuration (`/mutate`, `inject`).
    pub fn injector(&self) -> &Injector {
        &self.injector
    }

    /// The mode a policy's violations get, after the global `mode`.
    pub fn mode_of(&self, policy: PolicyName) -> PolicyMode {
        let policies = &self.config.policies;
        let mode = match policy {
            PolicyName::Digest => policies.digest.mode,
            PolicyName::Probes => policies.probes.mode,
            PolicyName::Resources => policies.resources.mode,
            PolicyName::Signatures => policies.signatures.mode,
        };
        match (self.config.mode, mode) {
            (Mode::Audit, PolicyMode::Enforce) => PolicyMode::Audit,
            (_, mode) => mode,
        }
    }

    /// Judges one workload.
    pub async fn evaluate(&self, workload: &Workload) -> Verdict {
        if let Some(reason) = self.out_of_scope(workload) {
            return Verdict::skipped(reason);
        }
        let scope = &self.config.scope;
        let mut containers: Vec<ContainerSite<'_>> = workload
            .containers()
            .into_iter()
            .filter(|c| !scope.exempt_containers.contains(&c.name))
            .collect();
        let notices = self.demote_untrusted_knative_pods(workload, &mut containers);
        self.see_through_our_sidecar(workload, &mut containers);
        let (platform, authored): (Vec<_>, Vec<_>) = containers
            .iter()
            .cloned()
            .partition(|c| self.is_platform(c));
        let authored_images: Vec<ImageUse> = workload
            .images(&authored)
            .into_iter()
            .filter(|i| !self.image_exempt(&i.image))
            .collect();
        // The cluster's queue-proxy is pinned like any image, but its signature is the
        // platform's business (Knative's config-deployment), not the workload author's.
        let platform_images =
            (platform.iter().map(ImageUse::of)).filter(|i| !self.image_exempt(&i.image));
        let all_images: Vec<ImageUse> = (authored_images.iter().cloned())
            .chain(platform_images)
            .collect();

        let mut violations = Vec::new();
        let mut warnings = notices;
        let mut unverifiable = false;
        for policy in &self.image_policies {
            if self.mode_of(policy.name()) != PolicyMode::Off {
                let images = match policy.name() {
                    PolicyName::Digest => &all_images,
                    _ => &authored_images,
                };
                let found = policy.check(images).await;
                violations.extend(found.violations);
                warnings.extend(found.warnings);
                unverifiable |= found.unverifiable;
            }
        }

        let warmup = self.warmup(workload, &mut violations);
        let probes_on = self.mode_of(PolicyName::Probes) != PolicyMode::Off;
        let resources_on = self.mode_of(PolicyName::Resources) != PolicyMode::Off;
        for site in containers.iter().filter(|c| self.is_serving(c)) {
            if probes_on {
                violations.extend(probes::check(site, warmup, &self.config.policies.probes));
            }
            if resources_on {
                violations.extend(resources::check(site));
            }
        }

        let findings = violations
            .into_iter()
            .filter_map(|violation| match self.mode_of(violation.policy) {
                PolicyMode::Off => None,
                mode => Some(Finding {
                    enforced: mode == PolicyMode::Enforce,
                    violation,
                }),
            })
            .collect();
        Verdict {
            unverifiable,
            ..Verdict::judged(findings, warnings)
        }
    }

    fn out_of_scope(&self, workload: &Workload) -> Option<String> {
        let scope = &self.config.scope;
        if let Some(ns) = workload.namespace.as_deref() {
            if scope.exempt_namespaces.iter().any(|e| e == ns) {
                return Some(format!("namespace {ns} is exempt (scope.exemptNamespaces)"));
            }
        }
        if let Some((k, v)) = scope
            .exempt_labels
            .iter()
            .find(|(k, v)| workload.labels.get(*k) == Some(v))
        {
            return Some(format!("label {k}={v} is exempt (scope.exemptLabels)"));
        }
        match &scope.selector {
            Some(selector) if !selector.matches(&workload.labels) => {
                Some("labels do not match scope.selector".into())
            }
            _ => None,
        }
    }

    /// Regular containers of long-running pods serve traffic, except declared sidecars
    /// and the platform's containers.
    fn is_serving(&self, site: &ContainerSite<'_>) -> bool {
        site.role == Role::Regular
            && !site.runs_to_completion
            && !self.is_platform(site)
            && !self.config.scope.sidecar_containers.contains(&site.name)
    }

    /// Containers the platform put there, trusted by image: the cluster's queue-proxy,
    /// our own injected sidecar, and `scope.platformSidecarImages` (KServe's agent).
    /// Their digests are checked; their probes, resources and signatures are not the
    /// workload author's business.
    fn is_platform(&self, site: &ContainerSite<'_>) -> bool {
        if site.is_knative_queue_proxy() {
            return true;
        }
        if site.role == Role::Ephemeral {
            return false;
        }
        let image = site.spec.image.as_ref().and_then(Image::ok);
        self.injector.is_ours(Some(&site.name), image)
            || (!self.platform_sidecar_images.is_empty()
                && image.is_some_and(|r| self.platform_sidecar_images.is_match(r.repository())))
    }

    /// After injection, queue-proxy probes our sidecar's `/readyz`, which passes only
    /// when the user container's original probe does. The probes policy judges that
    /// original (carried in the sidecar's env), so injection never changes a verdict:
    /// a TCP-only probe stays a violation. Only a sidecar trusted by image is read.
    fn see_through_our_sidecar(&self, workload: &Workload, containers: &mut [ContainerSite<'_>]) {
        for site in containers.iter_mut() {
            let Some(port) = site
                .delegated_readiness
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| match h.port {
                    IntOrString::Int(p) => Some(i64::from(p)),
                    IntOrString::String(_) => None,
                })
            else {
                continue;
            };
            let pod = &workload.pods[site.pod].spec;
            let ours = pod
                .containers
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|c| {
                    self.injector
                        .is_ours(c.name.as_deref(), c.image.as_ref().and_then(Image::ok))
                        && c.ports.as_deref().unwrap_or_default().iter().any(|p| {
                            p.get("containerPort").and_then(serde_json::Value::as_i64) == Some(port)
                        })
                });
            if let Some(ours) = ours {
                site.delegated_readiness = ours
                    .env_value(UPSTREAM_PROBE_ENV)
                    .and_then(|raw| serde_json::from_str(raw).ok());
            }
        }
    }

    /// Exemptions match the normalised reference only: the raw string is not what the
    /// runtime pulls, and an image that does not parse is never exempt.
    fn image_exempt(&self, image: &Image) -> bool {
        !self.exempt_images.is_empty()
            && image
                .ok()
                .is_some_and(|r| self.exempt_images.is_match(r.normalised()))
    }

    /// Anyone who can create a Pod can label it as Knative's and name a container
    /// queue-proxy: only the cluster's queue-proxy image earns the Knative reading. The
    /// other pods are judged as plain pods, with a notice saying why (on a cluster that
    /// mirrors or rebuilds queue-proxy, the fix is one line of config).
    fn demote_untrusted_knative_pods(
        &self,
        workload: &Workload,
        containers: &mut [ContainerSite<'_>],
    ) -> Vec<Violation> {
        let demoted: Vec<usize> = (workload.pods.iter().enumerate())
            .filter(|(_, p)| p.flavor == Flavor::KnativePod && !self.trusts_queue_proxy(p))
            .map(|(i, _)| i)
            .collect();
        let mut notices = Vec::new();
        for site in containers.iter_mut().filter(|c| demoted.contains(&c.pod)) {
            site.flavor = Flavor::Plain;
            site.delegated_readiness = None;
            if site.role == Role::Regular && site.name == QUEUE_PROXY {
                notices.push(Violation {
                    policy: PolicyName::Probes,
                    container: Some(site.name.clone()),
                    field: format!("{}.image", site.path),
                    message: format!(
                        "image {:?} is not one of scope.queueProxyImages, so this pod is not \
                         treated as Knative's and queue-proxy gets no exemption",
                        site.spec.image.as_ref().map(Image::raw).unwrap_or_default()
                    ),
                    hint: "if it is your cluster's Knative queue-proxy (a mirror or a vendor \
                           build), add its repository to scope.queueProxyImages"
                        .into(),
                });
            }
        }
        notices
    }

    /// Every `queue-proxy` of a Knative-built pod runs an image from
    /// `scope.queueProxyImages` (matched on the normalised repository).
    fn trusts_queue_proxy(&self, pod: &PodUnit) -> bool {
        let containers = pod.spec.containers.as_deref().unwrap_or_default();
        let mut queue_proxies = containers
            .iter()
            .filter(|c| c.name.as_deref() == Some(QUEUE_PROXY))
            .peekable();
        queue_proxies.peek().is_some()
            && queue_proxies.all(|c| {
                c.image
                    .as_ref()
                    .and_then(Image::ok)
                    .is_some_and(|r| self.queue_proxy_images.is_match(r.repository()))
            })
    }

    /// The declared warm-up; a malformed annotation is itself a probes violation.
    fn warmup(&self, workload: &Workload, violations: &mut Vec<Violation>) -> Option<u64> {
        let key = &self.config.policies.probes.warmup_annotation;
        let raw = workload.annotations.get(key)?;
        match raw.trim().parse::<u64>() {
            Ok(seconds) => Some(seconds),
            Err(_) => {
                violations.push(Violation {
                    policy: PolicyName::Probes,
                    container: None,
                    field: format!("metadata.annotations[{key}]"),
                    message: format!("warm-up annotation {raw:?} is not a whole number of seconds"),
                    hint: format!("write it as seconds, e.g. {key}: \"120\""),
                });
                None
            }
        }
    }
}

fn glob_set(field: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
    let mut globs = GlobSetBuilder::new();
    for (i, pattern) in patterns.iter().enumerate() {
        globs.add(image_glob(pattern).map_err(|e| ConfigError::Invalid {
            field: format!("{field}[{i}]"),
            message: e.to_string(),
        })?);
    }
    globs.build().map_err(|e| ConfigError::Invalid {
        field: field.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
