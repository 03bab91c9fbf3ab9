//! Hot reload. The process has one `ServerConfig` for its lifetime; it points at a
//! [`ServingResolver`] (and, with mTLS, a `ReloadingClientVerifier`) whose inner state
//! is swapped. Handshakes in flight keep the `Arc` they already resolved, so a swap
//! never fails one.
//!
//! Files are watched through their directories, because kubelet rotates a mounted
//! Secret by renaming a new `..data` symlink over the old one: the files themselves
//! never change, the directory entry does. A periodic re-read backs up the watcher
//! (network filesystems, missed events) and drives the expiry warning.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use notify::Watcher as _;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    client_auth::{self, ReloadingClientVerifier},
    inspect::{self, CertInfo},
    load::{ServingMaterial, ServingSource},
    metrics::{CertMetrics, Certificate, Outcome},
    CertError,
};

/// Bursts of filesystem events (kubelet writes several entries) are collapsed into one
/// reload after this quiet period.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A failed reload is retried once after this, before it is reported.
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// How often an expiry warning is repeated while it applies.
const WARN_EVERY: Duration = Duration::from_secs(3600);

/// Hands out the current serving certificate to every new handshake.
#[derive(Debug)]
pub(crate) struct ServingResolver {
    current: RwLock<ServingMaterial>,
}

impl ServingResolver {
    pub fn new(material: ServingMaterial) -> Self {
        Self {
            current: RwLock::new(material),
        }
    }

    pub fn swap(&self, material: ServingMaterial) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = material;
    }

    pub fn current(&self) -> ServingMaterial {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ServingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().certified)
    }
}

/// Everything the reload task re-reads.
pub(crate) struct Reloader {
    /// Serving files (absent in self-managed mode, where the Secret is the source).
    pub serving: Option<ServingSource>,
    pub serving_fingerprint: Vec<u8>,
    pub client_ca: Option<Arc<ReloadingClientVerifier>>,
    pub client_ca_fingerprint: Vec<u8>,
    pub client_ca_expiry: i64,
    pub resolver: Arc<ServingResolver>,
    pub metrics: CertMetrics,
    pub warn_before: Duration,
    pub poll_interval: Duration,
    failed_serving: Vec<u8>,
    failed_client_ca: Vec<u8>,
    last_warned: Option<Instant>,
}

impl Reloader {
    pub fn new(
        resolver: Arc<ServingResolver>,
        metrics: CertMetrics,
        warn_before: Duration,
        poll_interval: Duration,
    ) -> Self {
        Self {
            serving: None,
            serving_fingerprint: Vec::new(),
            client_ca: None,
            client_ca_fingerprint: Vec::new(),
            client_ca_expiry: i64::MAX,
            resolver,
            metrics,
            warn_before,
            poll_interval,
            failed_serving: Vec::new(),
            failed_client_ca: Vec::new(),
            last_warned: None,
        }
    }

    /// Starts watching and re-reading until `shutdown`.
    pub fn spawn(mut self, shutdown: CancellationToken) -> Result<(), CertError> {
        let changed = Arc::new(Notify::new());
        let watcher = self.watch(changed.clone())?;
        tokio::spawn(async move {
            // Dropping the watcher stops it, so it lives as long as the task.
            let _watcher = watcher;
            let mut poll = tokio::time::interval(self.poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = changed.notified() => {
                        tokio::time::sleep(DEBOUNCE).await;
                    }
                    _ = poll.tick() => {}
                }
                self.reload().await;
                self.warn_if_expiring();
            }
            tracing::debug!("certificate reloader stopped");
        });
        Ok(())
    }

    fn watch(&self, changed: Arc<Notify>) -> Result<Option<notify::RecommendedWatcher>, CertError> {
        let mut dirs = BTreeSet::new();
        if let Some(serving) = &self.serving {
            dirs.insert(parent(&serving.cert));
            dirs.insert(parent(&serving.key));
        }
        if let Some(ca) = &self.client_ca {
            dirs.insert(parent(ca.path()));
        }
        if dirs.is_empty() {
            return Ok(None);
        }
        let first = dirs.first().cloned().unwrap_or_default();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Access events are our own reads; everything else may be a rotation.
                if matches!(&event, Ok(e) if e.kind.is_access()) {
                    return;
                }
                changed.notify_one();
            })
            .map_err(|source| CertError::Watch {
                path: first,
                source,
            })?;
        for dir in dirs {
            watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .map_err(|source| CertError::Watch { path: dir, source })?;
        }
        Ok(Some(watcher))
    }

    /// Re-reads every source; valid changes are swapped in, invalid ones are logged and
    /// counted once while the previous material keeps serving.
    pub async fn reload(&mut self) {
        if let Some(source) = &self.serving {
            let mut loaded = source.load();
            if loaded.is_err() {
                // Reading cert and key is two opens; a swap between them (or a writer
                // still busy) looks like a mismatch. Look again before judging.
                tokio::time::sleep(RETRY_AFTER).await;
                loaded = source.load();
            }
            match loaded {
                Ok((material, fingerprint)) => {
                    if fingerprint != self.serving_fingerprint {
                        let old = self.resolver.current().leaf;
                        self.metrics
                            .set_expiry(Certificate::Serving, material.leaf.not_after);
                        tracing::info!(
                            cert = %source.cert.display(),
                            old_serial = %old.serial,
                            new_serial = %material.leaf.serial,
                            not_after = %inspect::format_unix(material.leaf.not_after),
                            "serving certificate reloaded"
                        );
                        self.resolver.swap(material);
                        self.serving_fingerprint = fingerprint;
                        self.failed_serving.clear();
                        self.metrics
                            .reloaded(Certificate::Serving, Outcome::Success);
                    }
                }
                Err(error) => {
                    // Half-written rotations fail here too; only report each bad state once.
                    let fingerprint = current_bytes(&[&source.cert, &source.key]);
                    if fingerprint != self.failed_serving {
                        tracing::error!(%error, "new serving certificate rejected; still serving the previous one");
                        self.metrics.reloaded(Certificate::Serving, Outcome::Error);
                        self.failed_serving = fingerprint;
                    }
                }
            }
        }
        if let Some(verifier) = &self.client_ca {
            let mut loaded = client_auth::load_client_ca(verifier.path());
            if loaded.is_err() {
                tokio::time::sleep(RETRY_AFTER).await;
                loaded = client_auth::load_client_ca(verifier.path());
            }
            match loaded {
                Ok(ca) => {
                    if ca.fingerprint != self.client_ca_fingerprint {
                        verifier.swap(ca.verifier);
                        self.metrics
                            .set_expiry(Certificate::ClientCa, ca.earliest_expiry);
                        self.client_ca_expiry = ca.earliest_expiry;
                        self.client_ca_fingerprint = ca.fingerprint;
                        self.failed_client_ca.clear();
                        self.metrics
                            .reloaded(Certificate::ClientCa, Outcome::Success);
                        tracing::info!(path = %verifier.path().display(), "client CA reloaded");
                    }
                }
                Err(error) => {
                    let fingerprint = current_bytes(&[verifier.path()]);
                    if fingerprint != self.failed_client_ca {
                        tracing::error!(%error, "new client CA rejected; still using the previous one");
                        self.metrics.reloaded(Certificate::ClientCa, Outcome::Error);
                        self.failed_client_ca = fingerprint;
                    }
                }
            }
        }
    }

    fn warn_if_expiring(&mut self) {
        if self.last_warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let leaf = self.resolver.current().leaf;
        let mut warned = warn_if_expiring(&leaf, "serving certificate", self.warn_before);
        if self.client_ca.is_some() && expiring_within(self.client_ca_expiry, self.warn_before) {
            tracing::warn!(
                not_after = %inspect::format_unix(self.client_ca_expiry),
                "a client CA expires soon; API server certificates it issued will be refused after that"
            );
            warned = true;
        }
        if warned {
            self.last_warned = Some(Instant::now());
        }
    }
}

/// Logs a warning when `cert` expires within `warn_before`; returns whether it did.
pub(crate) fn warn_if_expiring(cert: &CertInfo, what: &str, warn_before: Duration) -> bool {
    if !expiring_within(cert.not_after, warn_before) {
        return false;
    }
    tracing::warn!(
        serial = %cert.serial,
        not_after = %inspect::format_unix(cert.not_after),
        hours_left = (cert.not_after - inspect::unix_now()) / 3600,
        "{what} expires soon; rotate it before then"
    );
    true
}

/// Whether `not_after` (Unix seconds) is less than `window` away.
fn expiring_within(not_after: i64, window: Duration) -> bool {
    not_after - inspect::unix_now() <= i64::try_from(window.as_secs()).unwrap_or(i64::MAX)
}

fn parent(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn current_bytes(paths: &[&std::path::Path]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for path in paths {
        bytes.extend(std::fs::read(path).unwrap_or_default());
        bytes.push(0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warning_starts_at_the_configured_window() {
        let day = 86_400;
        let week = Duration::from_secs(7 * day as u64);
        let now = inspect::unix_now();
        assert!(expiring_within(now + 3 * day, week));
        assert!(
            expiring_within(now - day, week),
            "expired counts as expiring"
        );
        assert!(!expiring_within(now + 8 * day, week));
        assert!(!expiring_within(i64::MAX, week));
        assert!(expiring_within(
            now + 8 * day,
            Duration::from_secs(10 * day as u64)
        ));
    }
}
