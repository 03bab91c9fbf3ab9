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

use crate::{
    config::{image_glob, Config, Mode, PolicyMode},
    error::ConfigError,
    image::ImageRef,
    policy::{digest::DigestPolicy, probes, resources, ImagePolicy, PolicyName, Violation},
    workload::{ContainerSite, ImageUse, Role, Workload},
};

/// A compiled configuration, ready to judge workloads.
pub struct Engine {
    config: Config,
    exempt_images: GlobSet,
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
        let mut globs = GlobSetBuilder::new();
        for (i, pattern) in config.scope.exempt_images.iter().enumerate() {
            globs.add(image_glob(pattern).map_err(|e| ConfigError::Invalid {
                field: format!("scope.exemptImages[{i}]"),
                message: e.to_string(),
            })?);
        }
        let exempt_images = globs.build().map_err(|e| ConfigError::Invalid {
            field: "scope.exemptImages".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            config,
            exempt_images,
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
        let containers: Vec<ContainerSite<'_>> = workload
            .containers()
            .into_iter()
            .filter(|c| !scope.exempt_containers.contains(&c.name) && !c.is_knative_queue_proxy())
            .collect();
        let images: Vec<ImageUse> = workload
            .images(&containers)
            .into_iter()
            .filter(|i| !self.image_exempt(&i.image))
            .collect();

        let mut violations = Vec::new();
        let mut warnings = Vec::new();
        for policy in &self.image_policies {
            if self.mode_of(policy.name()) != PolicyMode::Off {
                let found = policy.check(&images).await;
                violations.extend(found.violations);
                warnings.extend(found.warnings);
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
        Verdict::judged(findings, warnings)
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

    /// Regular containers of long-running pods serve traffic, except declared sidecars.
    fn is_serving(&self, site: &ContainerSite<'_>) -> bool {
        site.role == Role::Regular
            && !site.runs_to_completion
            && !self.config.scope.sidecar_containers.contains(&site.name)
    }

    fn image_exempt(&self, image: &str) -> bool {
        if self.exempt_images.is_empty() {
            return false;
        }
        self.exempt_images.is_match(image)
            || ImageRef::parse(image).is_ok_and(|r| self.exempt_images.is_match(r.normalised()))
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

#[cfg(test)]
mod tests;
