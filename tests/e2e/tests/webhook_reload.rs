//! The server picks up config changes without a restart and keeps the last good config
//! when the new file is invalid.

use std::time::Duration;

use guardrail_e2e::{
    process::eventually,
    webhook::{admission_review, manifest, Webhook},
};

#[tokio::test]
async fn config_reload_applies_valid_files_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guardrail.yaml");
    std::fs::write(&config, "mode: enforce\n").expect("write config");
    let webhook = Webhook::start(&["--config", config.to_str().expect("utf-8 path")]);
    let client = webhook.client();
    let bad = admission_review(
        "r",
        "CREATE",
        &manifest("examples/bad/deployment-unpinned.yaml")[0],
    );
    let allowed = || async {
        let (_, answer) = webhook.validate(&client, &bad).await;
        answer["response"]["allowed"].as_bool()
    };
    assert_eq!(allowed().await, Some(false));

    // Replace the file the way a ConfigMap update or an editor does: write then rename.
    let staged = dir.path().join(".guardrail.yaml.tmp");
    std::fs::write(&staged, "mode: audit\n").expect("write staged config");
    std::fs::rename(&staged, &config).expect("swap config");
    eventually(
        "audit mode after reload",
        Duration::from_secs(15),
        || async { (allowed().await == Some(true)).then_some(()) },
    )
    .await;

    // An invalid file is refused; audit mode (the last good config) stays in force.
    std::fs::write(
        &config,
        "mode: audit\npolicies: {digest: {mode: sometimes}}\n",
    )
    .expect("write");
    eventually("failed reload metric", Duration::from_secs(15), || async {
        let metrics = webhook.metrics().await;
        (metrics.contains(r#"guardrail_config_reloads_total{result="failure"} 1"#)
            && metrics.contains("guardrail_config_last_reload_success 0"))
        .then_some(())
    })
    .await;
    assert_eq!(
        allowed().await,
        Some(true),
        "last good config must stay in force"
    );
    let metrics = webhook.metrics().await;
    assert!(
        metrics.contains(r#"guardrail_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
}
