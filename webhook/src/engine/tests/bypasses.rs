//! What a workload author controls must not change the verdict in their favour: image
//! strings that only look exempt, OCI model images, digest algorithms, init containers.

use serde_json::{json, Value};

use super::*;

/// A Deployment whose one otherwise good container runs `image`.
fn running(image: &str) -> Value {
    let mut container = good_container();
    container["image"] = json!(image);
    deployment(container)
}

#[tokio::test]
async fn exempt_image_globs_match_the_normalised_reference_only() {
    let config = || Config::parse("scope: {exemptImages: ['quay.io/acme/**']}").expect("config");
    // Exempt: the glob covers what the runtime pulls.
    let pinned = running("quay.io/acme/tool:1");
    assert!(judge_with(config(), &pinned).await.findings.is_empty());
    // Strings that match the glob as written but are no reference at all: never exempt.
    for image in [
        "quay.io/acme/../../evil.io/miner:1",
        "quay.io/acme/tool:1 ",
        "quay.io/acme/Tool:1",
    ] {
        let d = running(image);
        assert_eq!(
            found(&judge_with(config(), &d).await),
            vec![(PolicyName::Digest, "image".into(), true)],
            "{image:?}"
        );
    }
    // A short form would match nothing (references are normalised first): refused.
    for short in ["acme/*", "nginx:*"] {
        let err = Config::parse(&format!("scope: {{exemptImages: ['{short}']}}"))
            .expect_err("short form")
            .to_string();
        assert!(
            err.contains("scope.exemptImages[0]") && err.contains("docker.io/library/nginx"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn only_sha256_pins_an_image() {
    let image = format!("ghcr.io/acme/m@sha512:{}", "a".repeat(128));
    let verdict = judge(&running(&image)).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    assert!(
        verdict.findings[0]
            .violation
            .message
            .contains("sha256 digests only"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn kserve_oci_model_images_are_pinned_like_any_image() {
    let mut isvc = objects(&repo_file("examples/good/inferenceservice-runtime.yaml")).remove(0);
    isvc["spec"]["predictor"]["model"]["storageUri"] = json!("oci://ghcr.io/acme/llm-weights:v3");
    let verdict = judge(&isvc).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "storageUri".into(), true)]
    );
    assert_eq!(
        verdict.findings[0].violation.container.as_deref(),
        Some("modelcar")
    );
    isvc["spec"]["predictor"]["model"]["storageUri"] =
        json!(format!("oci://ghcr.io/acme/llm-weights@{DIGEST}"));
    assert!(judge(&isvc).await.findings.is_empty());
    // Other schemes are not images.
    isvc["spec"]["predictor"]["model"]["storageUri"] = json!("s3://models/llm/v3");
    assert!(judge(&isvc).await.findings.is_empty());

    // A custom predictor passes the URI to KServe in STORAGE_URI.
    let mut custom = objects(&repo_file("examples/good/inferenceservice-custom.yaml")).remove(0);
    custom["spec"]["predictor"]["containers"][0]["env"] =
        json!([{"name": "STORAGE_URI", "value": "oci://ghcr.io/acme/llm-weights:v3"}]);
    let verdict = judge(&custom).await;
    assert!(
        verdict.findings.iter().any(|f| f.violation.field
            == "spec.predictor.containers[0].env[0].value"
            && f.violation.policy == PolicyName::Digest),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn kserve_init_containers_are_checked() {
    let mut isvc = objects(&repo_file("examples/good/inferenceservice-custom.yaml")).remove(0);
    isvc["spec"]["predictor"]["initContainers"] =
        json!([{"name": "fetch", "image": "acme/fetch:1"}]);
    let verdict = judge(&isvc).await;
    assert_eq!(
        found(&verdict),
        vec![(PolicyName::Digest, "image".into(), true)]
    );
    assert_eq!(
        verdict.findings[0].violation.field,
        "spec.predictor.initContainers[0].image"
    );
}
