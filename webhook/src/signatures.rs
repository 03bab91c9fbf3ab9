//! Image signature verification (cosign, key and keyless) at admission.
//!
//! [`SignatureVerifier::check`] takes the image reference a pod runs and returns an
//! [`ImageVerdict`] with rule matching, `noMatch`, `onError`, the time budget, the cache
//! and single-flight already applied. It never panics and never exceeds the budget.
//! The digest verified is the one in the reference: tags are never resolved.

pub mod attestations;
pub mod auth;
pub mod bundle;
pub mod cache;
pub mod config;
pub mod cosign;
pub mod metrics;
pub mod registry;
pub mod rules;
pub mod tlog;
pub mod trust_root;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use oci_client::Reference;
use tracing::{debug, warn};

pub use auth::Credentials;
use cache::{CacheKey, Outcome};
pub use config::{NoMatch, OnError, SignaturesConfig};
use cosign::RuleTrust;
pub use metrics::SignatureMetrics;
use registry::Registries;
use rules::{normalised_name, RuleMatcher};

/// Errors at the signatures boundary: configuration (at start-up) and registry access.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignatureError {
    #[error("invalid config `{field}`: {message}")]
    Config { field: String, message: String },
    #[error("invalid registry auth file {}: {message}", path.display())]
    RegistryAuth { path: PathBuf, message: String },
    #[error("registry {registry}: {message}")]
    Registry {
        registry: String,
        /// Low-cardinality class used as a metric label.
        kind: &'static str,
        message: String,
    },
    #[error("registry {registry} exceeds a limit: {message}")]
    Limit { registry: String, message: String },
}

/// The decision for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageVerdict {
    Allowed,
    /// Allowed, but the user must see why (`noMatch: warn`, `onError: allow`).
    AllowedWithWarning {
        reason: String,
    },
    Denied {
        reason: String,
    },
    /// Denied because no signature could be checked (a registry unreachable, refusing
    /// us, too slow): the cause is the registry, not the image.
    Unverifiable {
        reason: String,
    },
}

impl ImageVerdict {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Denied { .. } | Self::Unverifiable { .. })
    }
}

/// Verifies image signatures; cheap to clone and share between requests.
#[derive(Clone)]
pub struct SignatureVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<RuleTrust>,
    on_error: Vec<OnError>,
    matcher: RuleMatcher,
    no_match: NoMatch,
    budget: Duration,
    registries: Registries,
    credentials: Credentials,
    cache: moka::future::Cache<CacheKey, Outcome>,
    metrics: SignatureMetrics,
}

/// The result of one rule for one image.
enum RuleResult {
    Verified,
    Rejected(String),
    Unverifiable(SignatureError),
}

impl SignatureVerifier {
    /// Validates `config`, loads keys, trust roots and credentials, registers metrics.
    pub fn new(
        config: &SignaturesConfig,
        registry_auth: Option<&Path>,
        metrics_registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, SignatureError> {
        let metrics = SignatureMetrics::new(metrics_registry);
        Self::with_metrics(config, registry_auth, metrics)
    }

    /// Like [`Self::new`] with metrics registered once before: use it on config reload
    /// (a new verifier per config, so a changed rule never reuses an old cached verdict).
    pub fn with_metrics(
        config: &SignaturesConfig,
        registry_auth: Option<&Path>,
        metrics: SignatureMetrics,
    ) -> Result<Self, SignatureError> {
        config.validate()?;
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleTrust::new(r, i))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match registry_auth {
            Some(path) => Credentials::load(path)?,
            None => Credentials::default(),
        };
        let cache = cache::new(
            config
                .cache
                .max_entries
                .unwrap_or(config::DEFAULT_CACHE_ENTRIES),
            config
                .cache
                .positive_ttl
                .unwrap_or(config::DEFAULT_POSITIVE_TTL),
            config
                .cache
                .negative_ttl
                .unwrap_or(config::DEFAULT_NEGATIVE_TTL),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                matcher: RuleMatcher::new(config.rules.iter().map(|r| r.images.as_slice()))?,
                on_error: config.rules.iter().map(|r| r.on_error).collect(),
                rules,
                no_match: config.no_match(),
                budget: config.budget(),
                registries: Registries::new(config)?,
                credentials,
                cache,
                metrics,
            }),
        })
    }

    /// Whether any rule exists (callers may skip the work entirely otherwise).
    pub fn has_rules(&self) -> bool {
        !self.inner.rules.is_empty()
    }

    /// Checks a pod's images concurrently, so the whole pod stays within one budget.
    pub async fn check_all(&self, images: &[Reference]) -> Vec<ImageVerdict> {
        join_all(images.iter().map(|image| self.check(image))).await
    }

    /// Decides whether `image` may run. Bounded by the configured budget.
    #[tracing::instrument(skip_all, fields(image = %image))]
    pub async fn check(&self, image: &Reference) -> ImageVerdict {
        let started = Instant::now();
        let (verdict, from_cache) = self.decide(image).await;
        let inner = &self.inner;
        inner
            .metrics
            .latency(from_cache, started.elapsed().as_secs_f64());
        inner.metrics.decision(match &verdict {
            ImageVerdict::Allowed => "allowed",
            ImageVerdict::AllowedWithWarning { .. } => "warned",
            ImageVerdict::Denied { .. } | ImageVerdict::Unverifiable { .. } => "denied",
        });
        debug!(?verdict, "signature verdict");
        verdict
    }

    async fn decide(&self, image: &Reference) -> (ImageVerdict, bool) {
        let inner = &self.inner;
        let name = normalised_name(image);
        let rules = inner.matcher.matching(&name);
        if rules.is_empty() {
            let verdict = match inner.no_match {
                NoMatch::Allow => ImageVerdict::Allowed,
                NoMatch::Warn => ImageVerdict::AllowedWithWarning {
                    reason: format!("image {image} matches no signature rule; it is not verified"),
                },
                NoMatch::Deny => ImageVerdict::Denied {
                    reason: format!(
                        "image {image} ({name}) matches no signature rule and noMatch is deny: \
                         add a rule whose `images` glob covers it"
                    ),
                },
            };
            return (verdict, true);
        }
        let Some(digest) = image.digest().filter(|d| is_sha256_digest(d)) else {
            // Never resolve a tag: what the registry says now is not what the node pulls later.
            let reason = format!(
                "image {image} is not pinned by a sha256 digest; signatures are verified on \
                 the digest the pod runs: use {name}@sha256:<digest>"
            );
            return (ImageVerdict::Denied { reason }, true);
        };
        let checks = rules
            .iter()
            .map(|&i| self.check_rule(i, image, &name, digest));
        let results = match tokio::time::timeout(inner.budget, join_all(checks)).await {
            Ok(results) => results,
            Err(_) => {
                inner.metrics.registry_error("budget");
                let budget = inner.budget;
                let err = SignatureError::Registry {
                    registry: image.registry().to_string(),
                    kind: "budget",
                    message: format!("timed out after {budget:?} (signatures.budget)"),
                };
                rules
                    .iter()
                    .map(|_| (RuleResult::Unverifiable(err.clone()), false))
                    .collect()
            }
        };
        let from_cache = results.iter().all(|(_, hit)| *hit);
        let mut denials = Vec::new();
        let mut warnings = Vec::new();
        let mut refuted = false;
        for (&i, (result, _)) in rules.iter().zip(results) {
            let rule = &inner.rules[i].name;
            match result {
                RuleResult::Verified => {}
                RuleResult::Rejected(why) => {
                    refuted = true;
                    denials.push(format!(
                        "signature of {image} does not satisfy rule {rule}: {why}"
                    ))
                }
                RuleResult::Unverifiable(e) => {
                    let msg = format!("could not verify signature of {image} (rule {rule}): {e}");
                    if inner.on_error[i] == OnError::Allow {
                        inner.metrics.on_error_allowed();
                        warn!(%msg, "allowed by onError: allow");
                        warnings.push(format!("{msg}; allowed because onError is allow"));
                    } else {
                        denials.push(msg);
                    }
                }
            }
        }
        let verdict = if !denials.is_empty() && refuted {
            ImageVerdict::Denied {
                reason: denials.join("; "),
            }
        } else if !denials.is_empty() {
            ImageVerdict::Unverifiable {
                reason: denials.join("; "),
            }
        } else if !warnings.is_empty() {
            ImageVerdict::AllowedWithWarning {
                reason: warnings.join("; "),
            }
        } else {
            ImageVerdict::Allowed
        };
        (verdict, from_cache)
    }

    /// One rule through the cache; the bool says whether it was a cache hit.
    async fn check_rule(
        &self,
        rule: usize,
        image: &Reference,
        name: &str,
        digest: &str,
    ) -> (RuleResult, bool) {
        let key = (name.to_string(), digest.to_string(), rule);
        let inner = &self.inner;
        let entry = inner
            .cache
            .entry(key)
            .or_try_insert_with(self.verify_uncached(rule, image, digest))
            .await;
        match entry {
            Ok(entry) => {
                let hit = !entry.is_fresh();
                inner.metrics.cache(hit);
                let result = match entry.into_value() {
                    Outcome::Verified(_) | Outcome::VerifiedForNow(_) => RuleResult::Verified,
                    Outcome::Rejected(why) => RuleResult::Rejected(why),
                };
                (result, hit)
            }
            Err(e) => {
                inner.metrics.cache(false);
                (RuleResult::Unverifiable((*e).clone()), false)
            }
        }
    }

    async fn verify_uncached(
        &self,
        rule: usize,
        image: &Reference,
        digest: &str,
    ) -> Result<Outcome, SignatureError> {
        let inner = &self.inner;
        let result = self.fetch_and_evaluate(rule, image, digest).await;
        if let Err(e) = &result {
            let kind = match e {
                SignatureError::Registry { kind, .. } => kind,
                _ => "limit",
            };
            inner.metrics.registry_error(kind);
        }
        result
    }

    /// The rule's signatures, then its attestations (from the same bundles).
    async fn fetch_and_evaluate(
        &self,
        rule: usize,
        image: &Reference,
        digest: &str,
    ) -> Result<Outcome, SignatureError> {
        let mut attested = Vec::new();
        let outcome = self
            .signature_outcome(rule, image, digest, &mut attested)
            .await?;
        let trust = &self.inner.rules[rule];
        let Outcome::Verified(who) = outcome else {
            return Ok(outcome);
        };
        if trust.attestations().is_empty() {
            return Ok(Outcome::Verified(who));
        }
        // cosign's legacy attestations (`cosign attest` before v3, most CI scan
        // attestations today): DSSE envelopes under the `.att` tag, for key rules.
        if !trust.keys().is_empty() {
            match self.legacy_attestations(rule, image, digest).await {
                Ok(found) => attested.extend(found),
                Err(SignatureError::Limit { message, .. }) => {
                    return Ok(Outcome::Rejected(message))
                }
                Err(e) => return Err(e),
            }
        }
        let name = normalised_name(image);
        Ok(
            match trust.check_attestations(&attested, &name, digest, SystemTime::now()) {
                Err(why) => Outcome::Rejected(why),
                // A policy that reads `now` can flip with time alone: cache it briefly.
                Ok(()) if trust.attestations().iter().any(|a| a.uses_now) => {
                    Outcome::VerifiedForNow(format!("{who}, attested"))
                }
                Ok(()) => Outcome::Verified(format!("{who}, attested")),
            },
        )
    }

    /// The key-signed Statements of the `.att` tag of `digest` (none when it is absent).
    async fn legacy_attestations(
        &self,
        rule: usize,
        image: &Reference,
        digest: &str,
    ) -> Result<Vec<(cosign::Signers, bundle::Statement)>, SignatureError> {
        let inner = &self.inner;
        let trust = &inner.rules[rule];
        let auth = inner.credentials.for_registry(image.registry());
        let Some(manifest) = inner
            .registries
            .attestation_manifest(image, digest, &auth)
            .await?
        else {
            return Ok(Vec::new());
        };
        let max = inner.registries.limits.max_payload_bytes;
        let mut found = Vec::new();
        for layer in &manifest.layers {
            let raw = inner.registries.fetch_layer(image, layer).await?;
            match bundle::legacy_attestation(&raw, digest, trust.keys(), max) {
                Ok((keys, statement)) => found.push((cosign::Signers::Keys(keys), statement)),
                Err(why) => {
                    debug!(rule = %trust.name, layer = %layer.digest, %why, "legacy attestation not counted")
                }
            }
        }
        Ok(found)
    }

    async fn signature_outcome(
        &self,
        rule: usize,
        image: &Reference,
        digest: &str,
        attested: &mut Vec<(cosign::Signers, bundle::Statement)>,
    ) -> Result<Outcome, SignatureError> {
        let inner = &self.inner;
        let registry = image.registry();
        let auth = inner.credentials.for_registry(registry);
        let trust = &inner.rules[rule];

        // Sigstore bundles first (cosign v3 writes no `.sig` tag by default), then the
        // legacy tag: a rule is satisfied by any valid signatures that meet it.
        let mut in_bundles = BTreeSet::new();
        let mut bundle_notes = Vec::new();
        let mut bundle_error = None;
        let mut keyless_signed = false;
        if !trust.keys().is_empty() || trust.keyless().is_some() {
            match inner.registries.bundles(image, digest, &auth).await {
                Ok(found) => {
                    let max = inner.registries.limits.max_payload_bytes;
                    for raw in &found.found {
                        if !trust.keys().is_empty() {
                            let log = trust.log_policy();
                            match bundle::verified_by_keys(
                                raw,
                                digest,
                                trust.keys(),
                                max,
                                log.as_ref(),
                            ) {
                                Ok((keys, statement)) if statement.is_signature() => {
                                    in_bundles.extend(keys)
                                }
                                Ok((keys, statement)) => {
                                    attested.push((cosign::Signers::Keys(keys), statement))
                                }
                                Err(why) => bundle_notes.push(why),
                            }
                        }
                        if let Some((keyless, identities)) = trust.keyless() {
                            match keyless.verify(raw, digest, identities, max).await {
                                Ok(statement) if statement.is_signature() => keyless_signed = true,
                                Ok(statement) => {
                                    attested.push((cosign::Signers::Keyless, statement))
                                }
                                Err(why) => bundle_notes.push(why),
                            }
                        }
                    }
                    bundle_notes.extend(found.skipped);
                }
                Err(SignatureError::Limit { message, .. }) => {
                    return Ok(Outcome::Rejected(message))
                }
                // Unreadable referrers may hide a valid bundle: decided below, once we
                // know whether the legacy signatures suffice.
                Err(e) => bundle_error = Some(e),
            }
            if keyless_signed {
                let who = "signed keyless (Sigstore bundle)".to_string();
                debug!(rule = %trust.name, %who, "signature verified");
                return Ok(Outcome::Verified(who));
            }
            if !trust.keys().is_empty() && in_bundles.len() >= trust.threshold() {
                let names: Vec<String> = in_bundles.iter().map(|k| format!("keys[{k}]")).collect();
                let who = format!("signed by {} (Sigstore bundle)", names.join(", "));
                debug!(rule = %trust.name, %who, "signature verified");
                return Ok(Outcome::Verified(who));
            }
        }
        let bundles_said = || {
            let mut said = if trust.keys().is_empty() {
                String::new()
            } else {
                format!(
                    "{} of the required {} trusted key(s) signed a Sigstore bundle (OCI referrers)",
                    in_bundles.len(),
                    trust.threshold()
                )
            };
            if !bundle_notes.is_empty() {
                said.push_str(&format!(" [{}]", bundle_notes.join("; ")));
            }
            said
        };

        let sig_tag = format!("{}.sig", digest.replace(':', "-"));
        if !trust.legacy_counts() && !trust.needs_sigstore() {
            if let Some(e) = bundle_error {
                return Err(e);
            }
            return Ok(Outcome::Rejected(format!(
                "{}; legacy .sig signatures do not count with transparency: required",
                bundles_said()
            )));
        }
        let manifest = match inner
            .registries
            .signature_manifest(image, digest, &auth)
            .await
        {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                if let Some(e) = bundle_error {
                    return Err(e);
                }
                let mut why = format!(
                    "no cosign signature found: no legacy tag {}/{}:{sig_tag}",
                    registry,
                    image.repository()
                );
                let bundles = bundles_said();
                if !bundles.is_empty() {
                    why.push_str(&format!(", and {bundles}"));
                }
                return Ok(Outcome::Rejected(why));
            }
            // A limit breach is the registry's content, not its availability: deny.
            Err(SignatureError::Limit { message, .. }) => return Ok(Outcome::Rejected(message)),
            Err(e) => return Err(e),
        };
        let count = manifest.layers.len();
        if count == 0 && in_bundles.is_empty() {
            return Ok(Outcome::Rejected(format!(
                "{sig_tag} holds no cosign signature layer"
            )));
        }
        let layers = if trust.needs_sigstore() {
            let transport = inner.registries.transport(registry);
            trust.fetch_layers(image, digest, &auth, &transport).await?
        } else {
            // Keys only: verify the layers we downloaded ourselves, within the limits.
            let fetches = manifest
                .layers
                .iter()
                .map(|layer| inner.registries.fetch_layer(image, layer));
            let fetched = join_all(fetches).await;
            let mut downloaded = Vec::with_capacity(count);
            for (layer, data) in manifest.layers.into_iter().zip(fetched) {
                match data {
                    Ok(data) => downloaded.push((layer, data)),
                    Err(SignatureError::Limit { message, .. }) => {
                        return Ok(Outcome::Rejected(message))
                    }
                    Err(e) => return Err(e),
                }
            }
            cosign::key_layers(downloaded)
        };
        Ok(match trust.evaluate(&layers, digest, count, &in_bundles) {
            Ok(who) => {
                debug!(rule = %trust.name, %who, "signature verified");
                Outcome::Verified(who)
            }
            Err(why) => match (bundle_error, bundles_said()) {
                (Some(e), _) => return Err(e),
                (None, bundles) if bundles.is_empty() => Outcome::Rejected(why),
                (None, bundles) => Outcome::Rejected(format!("{why}; {bundles}")),
            },
        })
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests;
