//! `check` output of signature warnings (verdicts that allow but must be seen).

use super::*;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----";

#[tokio::test]
async fn on_error_allow_is_printed_as_a_warning_and_listed_in_json() {
    // Nothing listens on port 1, so the registry is unreachable at once.
    let key = KEY.replace('\n', "\n        ");
    let config = Config::parse(&format!(
        "signatures:\n  registries: [{{host: \"127.0.0.1:1\", insecure: true}}]\n  rules:\n  \
         - images: [\"127.0.0.1:1/**\"]\n    onError: allow\n    keys:\n    - pem: |\n        {key}\n"
    ))
    .expect("config");
    let engine = Engine::build(config, &EngineOptions::unregistered()).expect("engine");
    let image = format!("127.0.0.1:1/models/llm@sha256:{}", "ab".repeat(32));
    let manifest = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: train}}\nspec:\n  template:\n    \
         spec:\n      restartPolicy: Never\n      containers: [{{name: trainer, image: \"{image}\"}}]\n"
    );
    let mut report = Report::default();
    for object in parse_documents("job.yaml", &manifest).expect("manifest") {
        judge(&engine, object, &mut report).await;
    }
    assert_eq!(report.exit_code(), EXIT_ALLOWED);

    let mut text = Vec::new();
    output::text(&report, &mut text).expect("text output");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(text.contains("ALLOWED with 1 warning(s)"), "{text}");
    assert!(
        text.contains("warning [signatures] container \"trainer\"")
            && text.contains("allowed because onError is allow"),
        "{text}"
    );

    let mut json = Vec::new();
    output::json(&report, &mut json).expect("json output");
    let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(json[0]["warnings"][0]["policy"], "signatures", "{json}");
    assert_eq!(json[0]["violations"].as_array().map(Vec::len), Some(0));
}
