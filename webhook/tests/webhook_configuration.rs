//! The shipped `examples/webhook-configuration.yaml` is what docs/webhook.md recommends:
//! fail closed, every kind the engine reads (and pods' ephemeral containers) routed to
//! us, in every API version, with a timeout our own answers fit under.

use std::{collections::HashSet, path::Path};

use clap::Parser;
use guardrail_webhook::{
    cli::{Cli, Command},
    workload::WorkloadKind,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;

/// `guardrail-webhook serve`'s default `--request-timeout`.
fn server_request_timeout() -> std::time::Duration {
    match Cli::try_parse_from(["guardrail-webhook", "serve"]).map(|cli| cli.command) {
        Ok(Command::Serve(args)) => args.request_timeout,
        other => panic!("serve with defaults must parse: {other:?}"),
    }
}

fn shipped() -> ValidatingWebhookConfiguration {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webhook-configuration.yaml");
    let text = std::fs::read_to_string(&path).expect("examples/webhook-configuration.yaml");
    serde_saphyr::from_str(&text).expect("a ValidatingWebhookConfiguration")
}

#[test]
fn the_shipped_webhook_configuration_fails_closed_and_covers_every_kind() {
    let config = shipped();
    let webhooks = config.webhooks.expect("webhooks");
    assert_eq!(webhooks.len(), 1);
    let hook = &webhooks[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.admission_review_versions, ["v1"]);
    assert!(
        hook.object_selector.is_none(),
        "object labels are the author's"
    );
    let timeout = hook.timeout_seconds.expect("timeoutSeconds");
    let server = server_request_timeout();
    assert!(
        u64::try_from(timeout).is_ok_and(|t| t > server.as_secs() && t <= 30),
        "timeoutSeconds {timeout} must exceed --request-timeout {server:?} (and the API \
         server caps it at 30)"
    );

    let mut routed = HashSet::new();
    for rule in hook.rules.as_deref().unwrap_or_default() {
        let operations = rule.operations.as_deref().unwrap_or_default();
        assert!(
            operations.iter().any(|o| o == "CREATE") && operations.iter().any(|o| o == "UPDATE"),
            "{rule:?}"
        );
        assert_eq!(rule.api_versions.as_deref(), Some(&["*".to_string()][..]));
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                routed.insert((group.clone(), resource.clone()));
            }
        }
    }
    for kind in WorkloadKind::ALL {
        let (group, resource) = kind.group_resource();
        assert!(
            routed.contains(&(group.to_string(), resource.to_string())),
            "{kind} ({group}/{resource}) is not sent to the webhook"
        );
    }
    assert!(routed.contains(&(String::new(), "pods/ephemeralcontainers".to_string())));
}
