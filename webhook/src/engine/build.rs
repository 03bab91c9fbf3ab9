//! Builds an engine from a config with the signature verifier attached when the config
//! has signature rules. `serve` uses it at start-up and on every reload, `check` once.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::Engine;
use crate::{
    config::Config,
    error::ConfigError,
    policy::signatures::SignaturePolicy,
    signatures::{SignatureMetrics, SignatureVerifier},
};

/// What an engine needs besides the config file.
#[derive(Clone)]
pub struct EngineOptions {
    /// `--registry-auth`: a docker config JSON with registry credentials. Read on each
    /// build, so a rotated secret is picked up by the next config reload.
    pub registry_auth: Option<PathBuf>,
    /// Registered once in the metrics registry and shared by every verifier built.
    pub signature_metrics: SignatureMetrics,
    /// The server's `--request-timeout`: `signatures.budget` must fit below it so the
    /// API server gets our precise denial, not its own timeout. `None` for `check`.
    pub request_timeout: Option<Duration>,
    /// `check --skip-signatures`: build no verifier at all.
    pub skip_signatures: bool,
}

impl EngineOptions {
    /// Options with metrics registered in a registry nobody reads (`check`, tests).
    pub fn unregistered() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        Self {
            registry_auth: None,
            signature_metrics: SignatureMetrics::new(&mut registry),
            request_timeout: None,
            skip_signatures: false,
        }
    }
}

impl Engine {
    /// Validates `config` and builds an engine with every policy it asks for.
    pub fn build(config: Config, options: &EngineOptions) -> Result<Self, ConfigError> {
        let engine = Engine::compile(config)?;
        let signatures = &engine.config().signatures;
        if options.skip_signatures || signatures.rules.is_empty() {
            return Ok(engine);
        }
        if let Some(timeout) = options.request_timeout {
            let budget = signatures.budget();
            if budget >= timeout {
                return Err(ConfigError::Invalid {
                    field: "signatures.budget".into(),
                    message: format!(
                        "{} must be below the server's --request-timeout ({}), itself below \
                         the WebhookConfiguration's timeoutSeconds: lower signatures.budget \
                         or raise --request-timeout",
                        humantime::format_duration(budget),
                        humantime::format_duration(timeout)
                    ),
                });
            }
        }
        let verifier = SignatureVerifier::with_metrics(
            signatures,
            options.registry_auth.as_deref(),
            options.signature_metrics.clone(),
        )?;
        if !verifier.has_rules() {
            return Ok(engine);
        }
        Ok(engine.with_image_policy(Arc::new(SignaturePolicy::new(verifier))))
    }
}
