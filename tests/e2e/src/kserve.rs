//! Support for the KServe end-to-end tests: the real KServe Python model server running
//! `tests/e2e/models/model.py`, whose behaviour the test switches through a file.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::process::{eventually, free_port, ChildGuard};

/// Model name served by `model.py`.
pub const MODEL: &str = "guardrail-test";

/// A running model server and the file that selects its behaviour.
pub struct ModelServer {
    pub child: ChildGuard,
    pub addr: SocketAddr,
    mode_file: PathBuf,
}

/// The venv Python with kserve installed (`GUARDRAIL_KSERVE_PYTHON`, default the venv
/// tests/setup/kserve.sh creates).
pub fn python() -> PathBuf {
    let path = std::env::var_os("GUARDRAIL_KSERVE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/guardrail/kserve-venv/bin/python")
        });
    assert!(
        path.exists(),
        "KServe's Python ({}) is missing: run tests/run.sh (tests/setup/kserve.sh installs it)",
        path.display()
    );
    path
}

impl ModelServer {
    /// Starts the model server and waits until the model is ready.
    pub async fn start(dir: &Path) -> Self {
        let server = Self::spawn(dir, free_port());
        server.wait_ready().await;
        server
    }

    /// Starts the model server on `http_port` without waiting for it.
    pub fn spawn(dir: &Path, http_port: u16) -> Self {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/model.py");
        let mode_file = dir.join("mode");
        std::fs::write(&mode_file, "ok").expect("write mode file");
        let grpc = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(&model)
            .args([
                "--http_port",
                &http_port.to_string(),
                "--grpc_port",
                &grpc.to_string(),
            ])
            .arg("--mode_file")
            .arg(&mode_file)
            .current_dir(dir);
        let child = ChildGuard::spawn("kserve model server", &mut cmd);
        Self {
            child,
            addr: ([127, 0, 0, 1], http_port).into(),
            mode_file,
        }
    }

    /// Waits until the model is ready.
    pub async fn wait_ready(&self) {
        let ready = format!("http://{}/v2/models/{MODEL}/ready", self.addr);
        eventually(
            "the KServe model to be ready",
            Duration::from_secs(90),
            || async {
                let r = reqwest::get(&ready).await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }

    /// Switches the behaviour (`ok`, `nan`, `null`, `empty`, `wrong_shape`,
    /// `error500`, `slow:<ms>`); the next request sees it.
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(&self.mode_file, mode).expect("write mode file");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
