//! The resource kinds the emulator serves, and how each behaves (scope, status
//! subresource, generation, schema). Built once per process: parsing and compiling the
//! CRD schemas is the only slow part of start-up.

use std::sync::{Arc, OnceLock};

use crate::schema::CrdSchema;
use crate::Error;

/// One served resource (a group/version/plural).
#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// `/status` is a separate subresource: writes to the main resource keep status.
    pub status_subresource: bool,
    /// `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// PUT without `metadata.resourceVersion` is allowed (true for built-in kinds,
    /// false for custom resources, as in the real API server).
    pub unconditional_update: bool,
    /// CRD structural schema, for Knative and KServe kinds.
    pub schema: Option<CrdSchema>,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key prefix, unique per resource.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// True when `name` names this kind the way kubectl users do: plural, singular,
    /// short name or Kind, optionally qualified with the group (`ksvc`, `services.serving.knative.dev`).
    pub fn matches(&self, name: &str) -> bool {
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b, Some(g)),
            None => (name, None),
        };
        if let Some(g) = group {
            if g != self.group {
                return false;
            }
        }
        let base = base.to_ascii_lowercase();
        base == self.plural
            || base == self.singular
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&base.as_str())
    }
}

/// All served kinds.
#[derive(Debug)]
pub struct Kinds {
    pub all: Vec<Arc<Kind>>,
}

impl Kinds {
    /// The process-wide table (CRD schemas compiled on first use).
    pub fn shared() -> Result<Arc<Kinds>, Error> {
        static KINDS: OnceLock<Result<Arc<Kinds>, String>> = OnceLock::new();
        KINDS
            .get_or_init(|| Kinds::build().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Schema)
    }

    fn build() -> Result<Kinds, Error> {
        let core = |kind, plural, singular, namespaced, status| Kind {
            group: "",
            version: "v1",
            kind,
            plural,
            singular,
            short_names: &[],
            namespaced,
            status_subresource: status,
            generation: false,
            unconditional_update: true,
            schema: None,
        };
        let mut all = vec![
            Kind {
                short_names: &["ns"],
                ..core("Namespace", "namespaces", "namespace", false, true)
            },
            core("Secret", "secrets", "secret", true, false),
            Kind {
                short_names: &["cm"],
                ..core("ConfigMap", "configmaps", "configmap", true, false)
            },
            Kind {
                short_names: &["po"],
                generation: true,
                ..core("Pod", "pods", "pod", true, true)
            },
            Kind {
                short_names: &["ev"],
                ..core("Event", "events", "event", true, false)
            },
            Kind {
                group: "events.k8s.io",
                short_names: &["ev"],
                ..core("Event", "events", "event", true, false)
            },
        ];
        // Leases: the sidecars elect one judge per canary revision.
        all.push(Kind {
            group: "coordination.k8s.io",
            ..core("Lease", "leases", "lease", true, false)
        });
        for (kind, plural, singular) in [
            (
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                "validatingwebhookconfiguration",
            ),
            (
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                "mutatingwebhookconfiguration",
            ),
        ] {
            all.push(Kind {
                group: "admissionregistration.k8s.io",
                generation: true,
                ..core(kind, plural, singular, false, false)
            });
        }
        let crd = |group, kind, plural, singular, short_names, file: &str| -> Result<Kind, Error> {
            Ok(Kind {
                group,
                version: if group == "serving.kserve.io" {
                    "v1beta1"
                } else {
                    "v1"
                },
                kind,
                plural,
                singular,
                short_names,
                namespaced: true,
                status_subresource: true,
                generation: true,
                unconditional_update: false,
                schema: Some(CrdSchema::from_crd_yaml(file)?),
            })
        };
        all.push(crd(
            "serving.knative.dev",
            "Service",
            "services",
            "service",
            &["kservice", "ksvc"],
            SERVICE_CRD,
        )?);
        all.push(crd(
            "serving.knative.dev",
            "Configuration",
            "configurations",
            "configuration",
            &["config", "cfg"],
            CONFIGURATION_CRD,
        )?);
        all.push(crd(
            "serving.knative.dev",
            "Revision",
            "revisions",
            "revision",
            &["rev"],
            REVISION_CRD,
        )?);
        all.push(crd(
            "serving.knative.dev",
            "Route",
            "routes",
            "route",
            &["rt"],
            ROUTE_CRD,
        )?);
        all.push(crd(
            "serving.kserve.io",
            "InferenceService",
            "inferenceservices",
            "inferenceservice",
            &["isvc"],
            ISVC_CRD,
        )?);
        Ok(Kinds {
            all: all.into_iter().map(Arc::new).collect(),
        })
    }

    /// The kind served at `group`/`version`/`plural`.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Kind>> {
        self.all
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
    }

    /// The kind an object's `apiVersion` and `kind` name.
    pub fn by_type(&self, api_version: &str, kind: &str) -> Option<Arc<Kind>> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.all
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
            .cloned()
    }

    /// The kind a kubectl-style resource name refers to (`ksvc`, `secrets`, `routes.serving.knative.dev`).
    /// Core kinds win over same-named custom ones, as in kubectl.
    pub fn by_name(&self, name: &str) -> Option<Arc<Kind>> {
        self.all.iter().find(|k| k.matches(name)).cloned()
    }

    /// Distinct (group, version) pairs, in table order.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for k in &self.all {
            if !out.contains(&(k.group, k.version)) {
                out.push((k.group, k.version));
            }
        }
        out
    }
}

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/",
            $path
        ))
    };
}

const SERVICE_CRD: &str = fixture!("knative/service.crd.yaml");
const CONFIGURATION_CRD: &str = fixture!("knative/configuration.crd.yaml");
const REVISION_CRD: &str = fixture!("knative/revision.crd.yaml");
const ROUTE_CRD: &str = fixture!("knative/route.crd.yaml");
const ISVC_CRD: &str = fixture!("kserve/inferenceservice.crd.yaml");
