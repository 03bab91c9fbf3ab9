//! Locates the workspace's binaries. `tests/run.sh` builds them (`cargo build --workspace
//! --bins`) before the tests run; they sit next to this test executable's `deps/` folder.

use std::path::PathBuf;

/// Path of a workspace binary such as `guardrail-webhook` or `guardrail-sidecar`.
///
/// Panics with the command to run when the binary has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test-exe> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        path.display()
    );
    path
}
