//! The `injection:` section of the webhook config: which sidecar `/mutate` adds, on
//! which ports, with what resources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{error::ConfigError, image::ImageRef};

/// Name of the injected container (also in `scope.sidecarContainers` by default).
pub const DEFAULT_CONTAINER_NAME: &str = "guardrail-sidecar";
/// Preferred proxy port: the sidecar's own default, free of Knative's and KServe's.
pub const DEFAULT_LISTEN_PORT: u16 = 8090;
/// Preferred admin port (`/readyz`, `/metrics`): the sidecar's own default.
pub const DEFAULT_ADMIN_PORT: u16 = 9095;

/// `injection:` config section. Every field has a default except `image`, without
/// which nothing is injected (pods are admitted with a warning saying so).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectionConfig {
    /// The sidecar image, pinned by digest (`repo@sha256:…`, optionally with a tag).
    /// Its repository is also what the validating policies trust as Guardrail's
    /// sidecar (they read the user container's original readiness probe from it).
    pub image: Option<String>,
    /// Container name (default `guardrail-sidecar`).
    pub container_name: String,
    /// Preferred proxy port (default 8090); the next free port above it when taken.
    pub listen_port: u16,
    /// Preferred admin port (default 9095); the next free port above it when taken.
    pub admin_port: u16,
    /// Resource requests (and limits) of the container. Default: requests cpu 50m,
    /// memory 64Mi; limit memory 256Mi; **no CPU limit** (CFS throttling shows up as
    /// tail latency on every proxied request).
    pub resources: Resources,
    /// The sidecar's own configuration (guardrail thresholds, sanity checks, window,
    /// limits: docs/sidecar.md), passed to every injected sidecar
    /// (`GUARDRAIL_SIDECAR_CONFIG`) and validated here at load with the sidecar's own
    /// rules. `listen`, `adminListen`, `upstream` and `upstreamProbe` are the injector's.
    /// Default: none (the sidecar's defaults).
    pub sidecar_config: Option<serde_json::Value>,
}

/// Fields of the sidecar config the injector sets per pod.
const INJECTOR_FIELDS: &[&str] = &["listen", "adminListen", "upstream", "upstreamProbe"];

/// Kubernetes quantities, written as in a pod spec.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

impl Default for Resources {
    fn default() -> Self {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Self {
            requests: map(&[("cpu", "50m"), ("memory", "64Mi")]),
            limits: map(&[("memory", "256Mi")]),
        }
    }
}

impl Default for InjectionConfig {
    fn default() -> Self {
        Self {
            image: None,
            container_name: DEFAULT_CONTAINER_NAME.into(),
            listen_port: DEFAULT_LISTEN_PORT,
            admin_port: DEFAULT_ADMIN_PORT,
            resources: Resources::default(),
            sidecar_config: None,
        }
    }
}

impl InjectionConfig {
    /// The image, parsed; `None` when unset. Errors name the field.
    pub fn parsed_image(&self) -> Result<Option<ImageRef>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            field: "injection.image".into(),
            message,
        };
        let Some(image) = &self.image else {
            return Ok(None);
        };
        let parsed = ImageRef::parse(image).map_err(|e| invalid(format!("{image:?}: {e}")))?;
        if parsed.digest().is_none() {
            return Err(invalid(format!(
                "{image:?} is not pinned by digest: write it as repository@sha256:<hex> \
                 (our own digest policy would deny every pod we inject)"
            )));
        }
        Ok(Some(parsed))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: format!("injection.{field}"),
            message,
        };
        self.parsed_image()?;
        if let Some(sidecar) = &self.sidecar_config {
            self.sidecar_config_text(sidecar)?;
        }
        let name = &self.container_name;
        let dns_label = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !dns_label {
            return Err(invalid(
                "containerName",
                format!("{name:?} is not a DNS label (lower-case letters, digits, '-', ≤ 63)"),
            ));
        }
        for (field, port) in [
            ("listenPort", self.listen_port),
            ("adminPort", self.admin_port),
        ] {
            if port == 0 {
                return Err(invalid(field, "must be a port number, 1..=65535".into()));
            }
        }
        if self.listen_port == self.admin_port {
            return Err(invalid(
                "adminPort",
                format!("is the same as listenPort ({})", self.listen_port),
            ));
        }
        for (kind, map) in [
            ("requests", &self.resources.requests),
            ("limits", &self.resources.limits),
        ] {
            for (resource, quantity) in map {
                if !is_quantity(quantity) {
                    return Err(invalid(
                        &format!("resources.{kind}.{resource}"),
                        format!("{quantity:?} is not a Kubernetes quantity (e.g. 50m, 64Mi, 1)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl InjectionConfig {
    /// `sidecarConfig` as the text the sidecar reads, once the sidecar's own parser and
    /// validation accept it.
    pub fn sidecar_config_text(&self, sidecar: &serde_json::Value) -> Result<String, ConfigError> {
        let field = "injection.sidecarConfig";
        let invalid = |field: String, message: String| ConfigError::Invalid { field, message };
        let map = sidecar.as_object().ok_or_else(|| {
            invalid(
                field.into(),
                "must be a mapping (the sidecar's config file)".into(),
            )
        })?;
        if let Some(taken) = INJECTOR_FIELDS.iter().find(|f| map.contains_key(**f)) {
            return Err(invalid(
                format!("{field}.{taken}"),
                "is set per pod by the injector; remove it".into(),
            ));
        }
        let text = sidecar.to_string();
        guardrail_sidecar::Config::from_yaml(&text).map_err(|e| match e {
            guardrail_sidecar::SidecarError::InvalidConfig {
                field: inner,
                message,
            } => invalid(format!("{field}.{inner}"), message),
            other => invalid(field.into(), other.to_string()),
        })?;
        Ok(text)
    }
}

/// A Kubernetes resource quantity: a decimal number with an optional SI or binary
/// suffix (`100m`, `64Mi`, `1.5`, `1e3`), as `resource.ParseQuantity` reads it.
fn is_quantity(text: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let number = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (number, None),
    };
    let decimal = |s: &str| {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        !(whole.is_empty() && frac.is_empty())
            && whole.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    match exponent {
        Some(e) => {
            decimal(mantissa)
                && !e.is_empty()
                && e.strip_prefix(['+', '-'])
                    .unwrap_or(e)
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        }
        None => SUFFIXES
            .iter()
            .any(|s| mantissa.strip_suffix(s).is_some_and(decimal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_like_kubernetes() {
        for ok in ["50m", "64Mi", "1", "1.5", "0.5Gi", "1e3", "100k", "+1"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "64MB", "1.2.3", "Mi", "1e", "ten"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn the_image_must_be_pinned_and_fields_are_named() {
        let mut config = InjectionConfig {
            image: Some("ghcr.io/acme/guardrail-sidecar:1.0".into()),
            ..Default::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("injection.image") && error.contains("digest"),
            "{error}"
        );
        config.image = Some(format!(
            "ghcr.io/acme/guardrail-sidecar@sha256:{}",
            "a".repeat(64)
        ));
        config.validate().unwrap();
        config.admin_port = config.listen_port;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("injection.adminPort"), "{error}");
        config.admin_port = DEFAULT_ADMIN_PORT;
        config
            .resources
            .requests
            .insert("cpu".into(), "lots".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("injection.resources.requests.cpu"),
            "{error}"
        );
    }
}
