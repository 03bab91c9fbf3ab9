//! Every input of the committed corpus (`fuzz/corpus/<target>/`, seeded from the test
//! data and grown by fuzzing) and every past crash (`fuzz/regressions/<target>/`)
//! through its target, on stable, as an ordinary test. A panic aborts the process, so
//! a regression fails the suite.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .map(|dir| root.join(dir).join(target))
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = guardrail_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no corpus for {target}: it would test nothing"
    );
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        eprintln!("{target}: {}", file.display());
        run(&data);
    }
}

#[test]
fn admission() {
    replay("admission");
}

#[test]
fn image_reference() {
    replay("image_reference");
}

#[test]
fn sanity() {
    replay("sanity");
}

#[test]
fn configs() {
    replay("configs");
}

#[test]
fn proxy_http1() {
    replay("proxy_http1");
}

#[test]
fn every_target_has_a_replay_test() {
    let here = include_str!("replay.rs");
    for (name, _) in guardrail_fuzz::TARGETS {
        assert!(here.contains(&format!("fn {name}()")), "{name}");
    }
}
