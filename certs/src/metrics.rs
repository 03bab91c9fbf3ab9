//! Certificate metrics. Names are registered in full (pass the root registry, not a
//! prefixed sub-registry) so alerts can rely on them.

use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Which certificate a sample is about.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Certificate {
    /// The serving certificate (leaf) presented to the API server.
    Serving,
    /// The CA(s) client certificates are checked against (--client-ca).
    ClientCa,
}

/// Outcome of a reload or a Kubernetes API write.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error,
}

impl EncodeLabelValue for Certificate {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Serving => "serving",
            Self::ClientCa => "client_ca",
        })
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Success => "success",
            Self::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertLabels {
    pub certificate: Certificate,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub certificate: Certificate,
    pub result: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub result: Outcome,
}

/// Handles to every certificate metric; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CertMetrics {
    expiry: Family<CertLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    renewals: Family<ResultLabels, Counter>,
    bundle_updates: Family<ResultLabels, Counter>,
    bundle_kinds_forbidden: Counter,
}

impl CertMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // Known label values exist from start-up at 0 (the expiry gauge only once a
        // certificate is loaded: 0 would read as "expired in 1970").
        for result in [Outcome::Success, Outcome::Error] {
            let _ = metrics.renewals.get_or_create(&ResultLabels { result });
            let _ = metrics
                .bundle_updates
                .get_or_create(&ResultLabels { result });
            let _ = metrics.reloads.get_or_create(&ReloadLabels {
                certificate: Certificate::Serving,
                result,
            });
        }
        registry.register(
            "guardrail_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate in use, Unix seconds (client_ca: the earliest CA)",
            metrics.expiry.clone(),
        );
        registry.register(
            "guardrail_webhook_certificate_reloads",
            "Certificate reloads after a file or Secret change, by result",
            metrics.reloads.clone(),
        );
        registry.register(
            "guardrail_webhook_certificate_renewals",
            "Self-managed mode: CA or serving certificate issuances written to the Secret",
            metrics.renewals.clone(),
        );
        registry.register(
            "guardrail_webhook_certificate_cabundle_updates",
            "Self-managed mode: caBundle writes to WebhookConfigurations, by result",
            metrics.bundle_updates.clone(),
        );
        registry.register(
            "guardrail_webhook_certificate_cabundle_forbidden_kinds",
            "Self-managed mode: WebhookConfiguration kinds skipped because reading them was \
             refused (403) while the other kind of that name is managed",
            metrics.bundle_kinds_forbidden.clone(),
        );
        metrics
    }

    pub(crate) fn set_expiry(&self, certificate: Certificate, not_after: i64) {
        self.expiry
            .get_or_create(&CertLabels { certificate })
            .set(not_after);
    }

    pub(crate) fn reloaded(&self, certificate: Certificate, result: Outcome) {
        self.reloads
            .get_or_create(&ReloadLabels {
                certificate,
                result,
            })
            .inc();
    }

    pub(crate) fn renewed(&self, result: Outcome) {
        self.renewals.get_or_create(&ResultLabels { result }).inc();
    }

    pub(crate) fn bundle_updated(&self, result: Outcome) {
        self.bundle_updates
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn bundle_kind_forbidden(&self) {
        self.bundle_kinds_forbidden.inc();
    }
}
