//! The container images, built daemonless from the project's Dockerfiles by
//! `images/build.sh` (Debian's buildah: vfs storage, chroot isolation; a base assembled
//! from Debian packages, since CI pulls no images) and pushed to the test registry.
//! Checked from the outside: the image config (non-root user, entrypoint, OCI labels);
//! the unpacked root filesystem (skopeo + umoci) runs each binary under `chroot` with
//! nothing from the host (no shell either); the chart rendered with the pushed digests
//! passes our own `check`; and once the images are signed with the test signer, a
//! webhook config that requires that signature admits the chart's own Deployment (and
//! denies it for another key, so the check can fail).

mod chart_support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use chart_support::render;
use guardrail_e2e::{
    bins::bin,
    registry::{
        cosign::{sign_with_keys, KeySigner},
        write, RegistryOptions, TestRegistry,
    },
    webhook::workspace_root,
};
use serde_json::{json, Value};

fn run(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `chroot ROOT BINARY ARGS` with an empty environment: (exit code, stdout + stderr).
fn in_chroot(root: &Path, binary: &str, args: &[&str]) -> (i32, String) {
    // An absolute path: the cleared environment has no PATH to look it up in.
    let output = Command::new("/usr/sbin/chroot")
        .arg(root)
        .arg(binary)
        .args(args)
        .env_clear()
        .output()
        .expect("run chroot");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

fn check(config: &Path, manifest: &Path) -> (i32, String) {
    let output = Command::new(bin("guardrail-webhook"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .arg(manifest)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_build_daemonless_run_non_root_from_their_own_rootfs_and_admit_their_deployment() {
    let registry = TestRegistry::start(RegistryOptions::default());
    let binaries: PathBuf = bin("guardrail-webhook").parent().unwrap().to_path_buf();
    let prefix = format!("{}/guardrail", registry.host);
    let built = run(Command::new(workspace_root().join("images/build.sh"))
        .arg("--binaries")
        .arg(&binaries)
        .args(["--base", "local", "--insecure", "--push", &prefix]));
    let images: BTreeMap<String, String> = built
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, reference)| (name.to_string(), reference.to_string()))
        .collect();
    assert_eq!(images.len(), 2, "{built}");
    let dir = tempfile::tempdir().unwrap();

    for (name, reference) in &images {
        assert!(reference.contains("@sha256:"), "{reference}");
        // The image config, as a runtime reads it.
        let config: Value = serde_json::from_str(&run(Command::new("skopeo").args([
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])))
        .unwrap();
        let c = &config["config"];
        assert_eq!(c["User"], "65532:65532", "{name}: non-root, numeric");
        assert_eq!(c["Entrypoint"], json!([format!("/usr/local/bin/{name}")]));
        let labels = &c["Labels"];
        assert_eq!(labels["org.opencontainers.image.title"], name.as_str());
        for label in ["source", "revision", "version"] {
            let value = labels[format!("org.opencontainers.image.{label}")]
                .as_str()
                .unwrap_or("");
            assert!(
                !value.is_empty() && value != "unknown",
                "{name}: {label} = {value:?}"
            );
        }

        // Its root filesystem, unpacked, runs the binary with nothing from the host.
        let layout = dir.path().join(format!("{name}-oci"));
        run(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:image", layout.display()),
        ]));
        let bundle = dir.path().join(format!("{name}-bundle"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:image", layout.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert!(
            !rootfs.join("bin/sh").exists() && !rootfs.join("usr/bin/sh").exists(),
            "{name}: no shell"
        );
        let (code, text) = in_chroot(&rootfs, &format!("/usr/local/bin/{name}"), &["--version"]);
        assert_eq!(code, 0, "{name} --version under chroot: {text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
        if name == "guardrail-webhook" {
            // The engine offline, inside its image: good examples pass, bad ones are denied.
            for (set, expected) in [("good", 0), ("bad", 1)] {
                let target = rootfs.join("tmp").join(set);
                run(Command::new("cp")
                    .arg("-r")
                    .arg(workspace_root().join("examples").join(set))
                    .arg(&target));
                let (code, text) = in_chroot(
                    &rootfs,
                    "/usr/local/bin/guardrail-webhook",
                    &["check", &format!("/tmp/{set}")],
                );
                assert_eq!(code, expected, "check {set} under chroot: {text}");
            }
        }
    }

    // The chart, with the pushed digests, passes our own check.
    let webhook = &images["guardrail-webhook"];
    let sidecar = &images["guardrail-sidecar"];
    let split = |r: &str| {
        let (repository, digest) = r.split_once('@').unwrap();
        (repository.to_string(), digest.to_string())
    };
    let (repository, digest) = split(webhook);
    let (sidecar_repository, sidecar_digest) = split(sidecar);
    let rendered = render(json!({
        "image": {"repository": repository, "digest": digest},
        "injection": {"enabled": true, "image": {"repository": sidecar_repository, "digest": sidecar_digest}},
    }));
    let deployment = dir.path().join("deployment.yaml");
    std::fs::write(
        &deployment,
        &rendered.manifests["guardrail/templates/deployment.yaml"],
    )
    .unwrap();
    let rendered_config = dir.path().join("rendered-config.yaml");
    std::fs::write(
        &rendered_config,
        rendered.config_map()["data"]["config.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let (code, report) = check(&rendered_config, &deployment);
    assert_eq!(code, 0, "{report}");

    // Signed with the test signer; a config requiring that key admits the Deployment.
    let key = KeySigner::new();
    let webhook_repo = repository
        .trim_start_matches(&format!("{}/", registry.host))
        .to_string();
    sign_with_keys(&registry, &webhook_repo, &digest, &[&key]).await;
    let require = |signer: &KeySigner, file: &str| {
        let public = write(dir.path(), file, &signer.public_pem);
        let path = dir.path().join(format!("{file}.config.yaml"));
        std::fs::write(
            &path,
            format!(
                "signatures:\n  registries: [{{host: \"{host}\", insecure: true}}]\n  rules:\n  - name: guardrail\n    images: [\"{host}/guardrail/**\"]\n    keys: [{{file: {}}}]\n",
                public.display(),
                host = registry.host
            ),
        )
        .unwrap();
        path
    };
    let (code, report) = check(&require(&key, "release.pub"), &deployment);
    assert_eq!(code, 0, "signed by the required key: {report}");
    let (code, report) = check(&require(&KeySigner::new(), "other.pub"), &deployment);
    assert_eq!(code, 1, "another key is required: {report}");
    assert!(report.contains("signature"), "{report}");
}
