//! The workload kinds that make pods, and where each keeps its pod template.

use std::fmt;

/// A kind Guardrail knows how to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    KnativeService,
    KnativeConfiguration,
    KnativeRevision,
    InferenceService,
}

pub const KNATIVE_GROUP: &str = "serving.knative.dev";
pub const KSERVE_GROUP: &str = "serving.kserve.io";

impl WorkloadKind {
    /// Every kind, e.g. to check that a WebhookConfiguration sends us all of them.
    pub const ALL: [WorkloadKind; 11] = {
        use WorkloadKind::*;
        [
            Pod,
            Deployment,
            ReplicaSet,
            StatefulSet,
            DaemonSet,
            Job,
            CronJob,
            KnativeService,
            KnativeConfiguration,
            KnativeRevision,
            InferenceService,
        ]
    };

    /// API group and resource (plural) as WebhookConfiguration rules name them.
    pub fn group_resource(self) -> (&'static str, &'static str) {
        use WorkloadKind::*;
        match self {
            Pod => ("", "pods"),
            Deployment => ("apps", "deployments"),
            ReplicaSet => ("apps", "replicasets"),
            StatefulSet => ("apps", "statefulsets"),
            DaemonSet => ("apps", "daemonsets"),
            Job => ("batch", "jobs"),
            CronJob => ("batch", "cronjobs"),
            KnativeService => (KNATIVE_GROUP, "services"),
            KnativeConfiguration => (KNATIVE_GROUP, "configurations"),
            KnativeRevision => (KNATIVE_GROUP, "revisions"),
            InferenceService => (KSERVE_GROUP, "inferenceservices"),
        }
    }

    /// Matches on API group and kind; any version of the group is read the same way.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        use WorkloadKind::*;
        Some(match (group, kind) {
            ("", "Pod") => Pod,
            ("apps", "Deployment") => Deployment,
            ("apps", "ReplicaSet") => ReplicaSet,
            ("apps", "StatefulSet") => StatefulSet,
            ("apps", "DaemonSet") => DaemonSet,
            ("batch", "Job") => Job,
            ("batch", "CronJob") => CronJob,
            (KNATIVE_GROUP, "Service") => KnativeService,
            (KNATIVE_GROUP, "Configuration") => KnativeConfiguration,
            (KNATIVE_GROUP, "Revision") => KnativeRevision,
            (KSERVE_GROUP, "InferenceService") => InferenceService,
            _ => return None,
        })
    }

    /// From a manifest's `apiVersion` (`apps/v1`, `v1`) and `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Self::from_group_kind(group, kind)
    }

    /// The bare kind, as users write it.
    pub fn kind(self) -> &'static str {
        use WorkloadKind::*;
        match self {
            Pod => "Pod",
            Deployment => "Deployment",
            ReplicaSet => "ReplicaSet",
            StatefulSet => "StatefulSet",
            DaemonSet => "DaemonSet",
            Job => "Job",
            CronJob => "CronJob",
            KnativeService => "Service",
            KnativeConfiguration => "Configuration",
            KnativeRevision => "Revision",
            InferenceService => "InferenceService",
        }
    }

    /// Where the pod template's metadata lives (labels and annotations that reach pods).
    pub fn template_metadata_path(self) -> &'static [&'static str] {
        use WorkloadKind::*;
        match self {
            Pod | KnativeRevision | InferenceService => &["metadata"],
            CronJob => &["spec", "jobTemplate", "spec", "template", "metadata"],
            _ => &["spec", "template", "metadata"],
        }
    }

    /// Where the pod specs live. KServe keeps one per component.
    pub fn pod_spec_paths(self) -> &'static [(&'static [&'static str], bool)] {
        use WorkloadKind::*;
        // (path, required)
        match self {
            Pod | KnativeRevision => &[(&["spec"], true)],
            CronJob => &[(&["spec", "jobTemplate", "spec", "template", "spec"], true)],
            InferenceService => &[
                (&["spec", "predictor"], true),
                (&["spec", "transformer"], false),
                (&["spec", "explainer"], false),
            ],
            _ => &[(&["spec", "template", "spec"], true)],
        }
    }

    pub fn is_knative(self) -> bool {
        matches!(
            self,
            WorkloadKind::KnativeService
                | WorkloadKind::KnativeConfiguration
                | WorkloadKind::KnativeRevision
        )
    }

    /// Lower-case label value for metrics (bounded set).
    pub fn metric_label(self) -> &'static str {
        use WorkloadKind::*;
        match self {
            Pod => "pod",
            Deployment => "deployment",
            ReplicaSet => "replicaset",
            StatefulSet => "statefulset",
            DaemonSet => "daemonset",
            Job => "job",
            CronJob => "cronjob",
            KnativeService => "knative_service",
            KnativeConfiguration => "knative_configuration",
            KnativeRevision => "knative_revision",
            InferenceService => "inferenceservice",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            k if k.is_knative() => write!(f, "{kind}.{KNATIVE_GROUP}"),
            WorkloadKind::InferenceService => write!(f, "{kind}.{KSERVE_GROUP}"),
            _ => f.write_str(kind),
        }
    }
}
