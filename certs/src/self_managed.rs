//! Self-managed mode: the webhook keeps its own CA and serving certificate in a Secret
//! and writes the CA bundle into its WebhookConfigurations.
//!
//! The Secret is the single source of truth. Every replica reads it, decides whether
//! something must be (re)issued, and writes with the resourceVersion it read; the loser
//! of a race gets 409 Conflict, re-reads and adopts the winner's material. During CA
//! rotation the bundle holds the new and the old CA, and a replica only switches to a
//! certificate from the new CA after it has made sure the WebhookConfigurations trust
//! it, so no API server call fails.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Secret,
    },
    ByteString,
};
use kube::api::{Api, PostParams};

use crate::{
    generate::{service_dns_names, Authority, Validity},
    inspect,
    load::ServingMaterial,
    metrics::{CertMetrics, Outcome},
    CertError,
};

mod bundle;
mod secret;

use bundle::Lookup;
use secret::{Stored, BUNDLE, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY};

/// Writes lost to other replicas before giving up for this round.
const MAX_ATTEMPTS: usize = 5;
const DAY: u64 = 86_400;

/// What self-managed mode manages and for how long certificates live.
#[derive(Debug, Clone)]
pub struct SelfManagedSettings {
    pub namespace: String,
    pub service: String,
    pub secret_name: String,
    /// Validating and/or Mutating WebhookConfigurations whose caBundle we own.
    pub webhook_configurations: Vec<String>,
    pub ca_days: u32,
    pub cert_days: u32,
    /// (Re)issue a certificate when it has less than this left.
    pub renew_before_days: u32,
}

/// Keeps the Secret and the caBundles right.
pub struct SelfManaged {
    client: kube::Client,
    settings: SelfManagedSettings,
    metrics: CertMetrics,
    /// Refusals already logged, so a tolerated 403 is logged once, not every round.
    tolerated: Mutex<HashSet<String>>,
}

impl SelfManaged {
    pub fn new(client: kube::Client, settings: SelfManagedSettings, metrics: CertMetrics) -> Self {
        Self {
            client,
            settings,
            metrics,
            tolerated: Mutex::default(),
        }
    }

    fn secret_ref(&self) -> String {
        format!(
            "Secret {}/{}",
            self.settings.namespace, self.settings.secret_name
        )
    }

    fn names(&self) -> Vec<String> {
        service_dns_names(&self.settings.service, &self.settings.namespace)
    }

    /// Makes the Secret hold valid material (creating or renewing it if needed) and
    /// returns that material.
    pub(crate) async fn reconcile_secret(&self) -> Result<(ServingMaterial, String), CertError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let name = &self.settings.secret_name;
        for attempt in 1..=MAX_ATTEMPTS {
            let existing = api.get_opt(name).await.map_err(|source| CertError::Kube {
                action: "get",
                object: self.secret_ref(),
                source,
            })?;
            let current = existing.as_ref().and_then(|secret| {
                match secret::parse(secret, self.secret_ref()) {
                    Ok(stored) => Some(stored),
                    Err(error) => {
                        tracing::warn!(%error, "stored certificates unusable; issuing new ones");
                        None
                    }
                }
            });
            let Some(pems) = self.plan(current.as_ref())? else {
                return self.usable(current);
            };
            let secret = secret::to_secret(&self.settings, existing.as_ref(), pems);
            let written = match &existing {
                None => api.create(&PostParams::default(), &secret).await,
                Some(_) => api.replace(name, &PostParams::default(), &secret).await,
            };
            match written {
                Ok(written) => {
                    self.metrics.renewed(Outcome::Success);
                    let stored = secret::parse(&written, self.secret_ref())?;
                    tracing::info!(
                        secret = %self.secret_ref(),
                        ca_serial = %stored.ca_info.serial,
                        "issued certificates and stored them"
                    );
                    return self.usable(Some(stored));
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(
                        attempt,
                        "another replica wrote the Secret first; re-reading"
                    );
                }
                Err(source) => {
                    self.metrics.renewed(Outcome::Error);
                    return Err(CertError::Kube {
                        action: if existing.is_some() {
                            "update"
                        } else {
                            "create"
                        },
                        object: self.secret_ref(),
                        source,
                    });
                }
            }
        }
        Err(CertError::Stored {
            object: self.secret_ref(),
            message: format!("still conflicting after {MAX_ATTEMPTS} writes; will retry"),
        })
    }

    /// The serving pair and bundle of material that `plan` found (or made) complete.
    fn usable(&self, stored: Option<Stored>) -> Result<(ServingMaterial, String), CertError> {
        match stored {
            Some(Stored {
                serving: Some(serving),
                bundle_pem,
                ..
            }) => Ok((serving, bundle_pem)),
            _ => Err(CertError::Stored {
                object: self.secret_ref(),
                message: "no usable serving certificate after reconciling".into(),
            }),
        }
    }

    /// What to write, or None when `current` is fine as it is.
    fn plan(
        &self,
        current: Option<&Stored>,
    ) -> Result<Option<BTreeMap<&'static str, String>>, CertError> {
        let now = inspect::unix_now();
        let renew_before = i64::from(self.settings.renew_before_days) * DAY as i64;
        let names = self.names();
        let (ca, mut bundle, rotated) = match current {
            Some(cur) if cur.ca_info.not_after - now > renew_before => {
                (None, cur.bundle.clone(), false)
            }
            _ => {
                // The issue time keeps the subjects of old and new CA apart.
                let ca = Authority::new(
                    &format!(
                        "guardrail-webhook-ca {}/{} {}",
                        self.settings.namespace,
                        self.settings.service,
                        inspect::format_unix(now)
                    ),
                    Validity::days_from_now(self.settings.ca_days),
                )?;
                let mut bundle = bundle::parse(ca.cert_pem(), Path::new("new CA"))?;
                if let Some(cur) = current {
                    tracing::info!(old_ca = %cur.ca_info.serial, "CA expires soon; rotating it");
                    bundle.extend(cur.bundle.iter().cloned());
                }
                (Some(ca), bundle, true)
            }
        };
        let ca_ref = match (&ca, current) {
            (Some(ca), _) => ca,
            (None, Some(cur)) => {
                // The signing CA is always trusted, whatever the stored bundle says.
                if !bundle
                    .iter()
                    .any(|(_, info)| info.serial == cur.ca_info.serial)
                {
                    bundle.insert(0, (cur.ca.cert_pem().to_string(), cur.ca_info.clone()));
                }
                &cur.ca
            }
            (None, None) => return Ok(None),
        };
        bundle.retain(|(_, info)| info.not_after > now);
        bundle.dedup_by(|a, b| a.1.serial == b.1.serial);
        let serving_ok = !rotated
            && current
                .and_then(|cur| cur.serving.as_ref())
                .is_some_and(|serving| {
                    serving.leaf.not_after - now > renew_before
                        && secret::issued_for(ca_ref, serving, &names)
                });
        let bundle_pem = bundle::render(&bundle);
        let bundle_changed = current.is_none_or(|cur| cur.bundle_pem != bundle_pem);
        if serving_ok && !bundle_changed {
            return Ok(None);
        }
        let (tls_crt, tls_key) = match (serving_ok, current) {
            (true, Some(cur)) => (cur.tls_crt.clone(), cur.tls_key.clone()),
            _ => {
                let issued = ca_ref
                    .issue_serving(&names, Validity::days_from_now(self.settings.cert_days))?;
                (issued.cert_pem, issued.key_pem)
            }
        };
        Ok(Some(BTreeMap::from([
            (CA_CRT, ca_ref.cert_pem().to_string()),
            (CA_KEY, ca_ref.key_pem().to_string()),
            (TLS_CRT, tls_crt),
            (TLS_KEY, tls_key),
            (BUNDLE, bundle_pem),
        ])))
    }

    /// Writes `bundle_pem` into every named Validating/MutatingWebhookConfiguration that
    /// does not already have it. Errors name the configuration. Returns whether
    /// anything was written.
    pub(crate) async fn update_ca_bundles(&self, bundle_pem: &str) -> Result<bool, CertError> {
        let result = self.update_ca_bundles_inner(bundle_pem).await;
        match result {
            Ok(true) => self.metrics.bundle_updated(Outcome::Success),
            Ok(false) => {}
            Err(_) => self.metrics.bundle_updated(Outcome::Error),
        }
        result
    }

    async fn update_ca_bundles_inner(&self, bundle_pem: &str) -> Result<bool, CertError> {
        let wanted = ByteString(bundle_pem.as_bytes().to_vec());
        let mut written = false;
        for name in &self.settings.webhook_configurations {
            let lookups = [
                bundle::update::<ValidatingWebhookConfiguration>(&self.client, name, &wanted)
                    .await?,
                bundle::update::<MutatingWebhookConfiguration>(&self.client, name, &wanted).await?,
            ];
            written |= self.settle(name, lookups)?;
        }
        Ok(written)
    }

    /// Combines the lookups of both kinds for configuration `name`: at least one must
    /// be found. A kind we may not read is tolerated then (an install usually uses
    /// one kind and grants RBAC for that one only), and logged once.
    fn settle(&self, name: &str, lookups: [Lookup; 2]) -> Result<bool, CertError> {
        let (mut found, mut written, mut forbidden) = (false, false, Vec::new());
        for lookup in lookups {
            match lookup {
                Lookup::Found { written: w } => (found, written) = (true, written | w),
                Lookup::Missing => {}
                Lookup::Forbidden(error) => forbidden.push(error),
            }
        }
        if found {
            for error in forbidden {
                self.metrics.bundle_kind_forbidden();
                let first = self
                    .tolerated
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(error.to_string());
                if first {
                    tracing::info!(%error, "ignoring a WebhookConfiguration kind we may not read; the other kind of this name is managed");
                }
            }
            return Ok(written);
        }
        let message = match forbidden.as_slice() {
            [] => "no ValidatingWebhookConfiguration or MutatingWebhookConfiguration of this \
                   name; fix --manage-webhook-configurations or create it"
                .to_string(),
            errors => format!(
                "not found, and reading was refused: {}; grant get and update on the kind \
                 your install uses",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Err(CertError::Stored {
            object: format!("WebhookConfiguration {name}"),
            message,
        })
    }

    /// One full round: Secret, then caBundles. Returns the serving material and
    /// whether the caBundles already trusted its CA before this round (a bundle written
    /// just now gets one interval for the API server to pick it up).
    pub(crate) async fn round(&self) -> Result<(ServingMaterial, bool), CertError> {
        let (serving, bundle_pem) = self.reconcile_secret().await?;
        let settled = match self.update_ca_bundles(&bundle_pem).await {
            Ok(written) => !written,
            Err(error) => {
                tracing::error!(%error, "cannot update caBundle; will retry");
                false
            }
        };
        Ok((serving, settled))
    }

    /// Runs rounds every `interval` until `shutdown`. A new serving certificate is
    /// only used once two consecutive rounds saw it with the caBundles already in
    /// place, so the API server has had at least one interval to load the bundle
    /// (whichever replica wrote it). An expired current certificate is replaced at
    /// once: there is nothing left to protect.
    pub(crate) fn spawn(
        self,
        resolver: Arc<crate::reload::ServingResolver>,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            // The new serial seen in the previous round with the bundle in place.
            let mut pending: Option<String> = None;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match self.round().await {
                    Ok((material, settled)) => {
                        let current = resolver.current().leaf;
                        let serial = material.leaf.serial.clone();
                        if serial == current.serial {
                            // Expiry warnings come from the file reloader's hourly check.
                            pending = None;
                            continue;
                        }
                        let ready = settled && pending.as_deref() == Some(serial.as_str());
                        if ready || current.not_after <= inspect::unix_now() {
                            pending = None;
                            tracing::info!(old_serial = %current.serial, new_serial = %material.leaf.serial, "serving certificate switched");
                            self.metrics.set_expiry(
                                crate::metrics::Certificate::Serving,
                                material.leaf.not_after,
                            );
                            resolver.swap(material);
                        } else {
                            pending = settled.then_some(serial);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "self-managed certificate round failed; will retry")
                    }
                }
            }
        });
    }
}
