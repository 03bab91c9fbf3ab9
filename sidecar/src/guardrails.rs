//! Guardrails: judge a canary revision continuously (one judge per revision, over
//! every pod's evidence: `crate::judgement`) and roll it back on a breach or walk it
//! through staged promotion.
//!
//! Pure parts (`thresholds`, `knative`, `kserve`, `records`, `rollback`, `promotion`)
//! are separate from the Kubernetes access (`api`, behind the `Cluster` trait), the
//! peers' summaries (`peers`), the judge election (`lease`) and the loop that ties them
//! together (`controller`), which runs beside the data path and never blocks it.

pub mod api;
pub mod config;
pub mod controller;
pub mod knative;
pub mod kserve;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod peers;
pub mod promotion;
pub mod records;
pub mod rollback;
pub mod thresholds;
pub mod view;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::GuardrailsConfig;
pub use local::Local;
pub use metrics::GuardrailMetrics;
pub use thresholds::{Rules, Thresholds};

/// Starts the guardrail loop when it can run: enabled, and the revision and its
/// Knative Service known. Kubernetes access comes from `KUBECONFIG`/`~/.kube/config`
/// or the in-cluster service account. Without it the sidecar keeps measuring and
/// serving (a broken guardrail must not take the model down): the reason is logged
/// as an error and counted in `guardrail_kube_api_errors_total{reason="config"}`.
pub async fn start(
    config: &GuardrailsConfig,
    local: Arc<Local>,
    metrics: GuardrailMetrics,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let identity = &local.identity;
    if !config.enabled {
        tracing::info!("guardrails disabled by config (guardrails.enabled: false)");
        return None;
    }
    if identity.revision.is_empty() || identity.service.is_empty() {
        tracing::info!("guardrails off: no revision or service (set K_REVISION and K_SERVICE, or --revision and --service)");
        return None;
    }
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            metrics.api_error("config");
            tracing::error!(error = %e, "guardrails off: no Kubernetes access (in-cluster service account or KUBECONFIG); still serving");
            return None;
        }
    };
    let namespace = if identity.namespace.is_empty() {
        client.default_namespace().to_string()
    } else {
        identity.namespace.clone()
    };
    let mut identity = identity.clone();
    identity.namespace = namespace.clone();
    let api = api::KubeApi::new(client, &namespace, config.api_timeout, &identity.pod);
    let controller = controller::Controller::new(config.clone(), identity, local, metrics, api);
    Some(tokio::spawn(controller.run(shutdown)))
}
