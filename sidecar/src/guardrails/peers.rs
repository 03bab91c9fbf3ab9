//! Reading the other pods' summaries (`GET /guardrails/summary` on their admin port),
//! the way Knative's autoscaler scrapes queue-proxy stats from pods directly — but from
//! every pod, since the tests need exact counts. Bounded: one request per pod per
//! `peerInterval`, each with a timeout and a body cap, all concurrently.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use super::api::PeerPod;
use crate::judgement::step::{PeerReport, WireReport};

/// Largest summary accepted (a V2-deflated histogram is a few hundred bytes).
const MAX_SUMMARY_BYTES: usize = 1 << 20;

/// Why a peer's summary is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("pod {pod}: {message}")]
    Unreachable { pod: String, message: String },
    #[error("pod {pod}: bad summary: {message}")]
    Invalid { pod: String, message: String },
    #[error("pod {pod} reports revision {reported}, not {expected}")]
    WrongRevision {
        pod: String,
        reported: String,
        expected: String,
    },
}

impl PeerError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Invalid { .. } => "invalid",
            Self::WrongRevision { .. } => "wrong_revision",
        }
    }
}

/// HTTP client for peers' admin ports.
#[derive(Clone)]
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// Every pod's report (in `pods` order), each a result.
    pub async fn scrape_all(
        &self,
        pods: &[PeerPod],
        revision: &str,
    ) -> Vec<Result<PeerReport, PeerError>> {
        futures::future::join_all(pods.iter().map(|p| self.scrape(p, revision))).await
    }

    pub async fn scrape(&self, pod: &PeerPod, revision: &str) -> Result<PeerReport, PeerError> {
        let unreachable = |message: String| PeerError::Unreachable {
            pod: pod.name.clone(),
            message,
        };
        let host = if pod.ip.contains(':') {
            format!("[{}]", pod.ip)
        } else {
            pod.ip.clone()
        };
        let uri: http::Uri = format!("http://{host}:{}/guardrails/summary", pod.admin_port)
            .parse()
            .map_err(|e| unreachable(format!("bad address: {e}")))?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if !response.status().is_success() {
                return Err(unreachable(format!("answered {}", response.status())));
            }
            let body = Limited::new(response.into_body(), MAX_SUMMARY_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the body: {e}")))?
                .to_bytes();
            Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        let invalid = |message: String| PeerError::Invalid {
            pod: pod.name.clone(),
            message,
        };
        let wire: WireReport = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        let report = PeerReport::try_from(wire).map_err(|e| invalid(e.to_string()))?;
        if report.revision != revision {
            return Err(PeerError::WrongRevision {
                pod: pod.name.clone(),
                reported: report.revision,
                expected: revision.to_string(),
            });
        }
        Ok(report)
    }
}
