//! Reloads the config file when it changes. An invalid new file is logged and counted,
//! and the last good config stays in force.

use std::{path::PathBuf, sync::Arc, time::Duration};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::Config;
use crate::{
    engine::{Engine, EngineOptions},
    error::{ConfigError, Error},
    metrics::{Metrics, ResultLabels},
};

/// Editors and ConfigMap updates write in several steps; wait for the burst to settle.
const SETTLE: Duration = Duration::from_millis(150);

/// What a reload needs: the file, where to publish engines, and how to build them.
pub struct Reload {
    pub path: PathBuf,
    pub engines: watch::Sender<Arc<Engine>>,
    /// The same options as at start-up (signature metrics, registry auth, timeout).
    pub options: EngineOptions,
    pub metrics: Metrics,
}

impl Reload {
    /// Watches the file (through its directory, so ConfigMap symlink swaps and editors
    /// that replace the file are seen) and publishes each new valid config's engine.
    pub fn watch(self, shutdown: CancellationToken) -> Result<(), Error> {
        let Reload {
            path,
            engines,
            options,
            metrics,
        } = self;
        watch(path, engines, options, metrics, shutdown)
    }
}

fn watch(
    path: PathBuf,
    engines: watch::Sender<Arc<Engine>>,
    options: EngineOptions,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|source| Error::Watch {
        path: path.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| Error::Watch {
            path: path.clone(),
            source,
        })?;

    tokio::spawn(async move {
        // Moved in so the watcher lives as long as this task.
        let _watcher = watcher;
        let mut last = std::fs::read_to_string(&path).ok();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Mid-swap the file can be briefly missing; the next event re-reads it.
                Err(_) => continue,
            };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            // A new verifier per config: its cache starts empty, so a changed rule never
            // reuses a verdict made under the old one.
            let result = reloaded_engine(&text, &options).map_err(|e| e.in_file(&path));
            match result {
                Ok(engine) => {
                    engines.send_replace(Arc::new(engine));
                    record(&metrics, "success");
                    info!(path = %path.display(), "config reloaded");
                }
                Err(e) => {
                    record(&metrics, "failure");
                    error!(error = %e, "config reload failed; keeping the last good config");
                }
            }
        }
    });
    Ok(())
}

/// The engine for a changed file. An empty file is refused, not read as "all defaults":
/// it is what a writer that truncates then writes leaves for a moment, and the defaults
/// have no signature rules, so accepting it would switch verification off (fail open)
/// until the next event. To really go back to the defaults, write a comment or `{}`.
fn reloaded_engine(text: &str, options: &EngineOptions) -> Result<Engine, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Parse {
            path: None,
            message: "the file is empty (a write in progress?); keeping the last good config. \
                      To return to the built-in defaults, write `{}`"
                .into(),
        });
    }
    Config::parse(text).and_then(|config| Engine::build(config, options))
}

fn record(metrics: &Metrics, result: &'static str) {
    metrics
        .config_reloads
        .get_or_create(&ResultLabels { result })
        .inc();
    metrics
        .config_last_reload_ok
        .set(i64::from(result == "success"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_a_write_in_progress_not_the_defaults() {
        let options = EngineOptions::unregistered();
        for text in ["", "\n  \n"] {
            let err = match reloaded_engine(text, &options) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{text:?} must not replace the running config"),
            };
            assert!(err.contains("empty"), "{err}");
        }
        let engine = reloaded_engine("{}", &options).expect("explicit defaults");
        assert!(engine.config().signatures.rules.is_empty());
        assert!(reloaded_engine("# defaults\n", &options).is_ok());
    }
}
