//! `--client-ca`: only clients with a certificate from that CA are served, and the CA
//! file is hot-reloaded like the serving pair.

mod common;

use std::time::Duration;

use common::{client_config, eventually, review, write, KubeletVolume};
use guardrail_certs::Validity;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_ca_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serving_ca = common::ca(30);
    let pair = common::serving(&serving_ca);
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let (api_ca, other_ca) = (common::ca(30), common::ca(30));
    let ca_dir = dir.path().join("client-ca");
    std::fs::create_dir(&ca_dir).expect("ca dir");
    let mut ca_volume = KubeletVolume::new(&ca_dir, &[("ca.crt", api_ca.cert_pem())]);

    let mut args = common::file_args(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    args.client_ca = Some(ca_volume.path("ca.crt"));
    let shutdown = CancellationToken::new();
    let (tls, registry) = common::start(&args, &shutdown).await.expect("start");
    let addr = common::serve(tls.server_config()).await;

    let validity = Validity::days_from_now(10);
    let api_server = api_ca
        .issue_client("kube-apiserver", validity)
        .expect("client");
    let stranger = other_ca
        .issue_client("kube-apiserver", validity)
        .expect("client");
    let trusted = [serving_ca.cert_pem()];

    let anonymous = review(addr, client_config(&trusted, None), "anonymous").await;
    let error = anonymous.expect_err("served without a client certificate");
    assert!(error.contains("CertificateRequired"), "{error}");

    let wrong = review(addr, client_config(&trusted, Some(&stranger)), "stranger").await;
    let error = wrong.expect_err("served a certificate from another CA");
    assert!(error.contains("UnknownCA"), "{error}");

    review(
        addr,
        client_config(&trusted, Some(&api_server)),
        "api-server",
    )
    .await
    .expect("served the API server's certificate");

    // Rotate the client CA the way kubelet does: the other CA becomes the trusted one.
    ca_volume.publish(&[("ca.crt", other_ca.cert_pem())]);
    let stranger_config = client_config(&trusted, Some(&stranger));
    eventually(
        "the new client CA to be trusted",
        Duration::from_secs(15),
        || {
            let config = stranger_config.clone();
            async move { review(addr, config, "after-rotation").await.ok() }
        },
    )
    .await;
    let old = review(addr, client_config(&trusted, Some(&api_server)), "old-ca").await;
    assert!(
        old.is_err(),
        "a certificate of the removed CA is still accepted"
    );

    let text = common::metrics_text(&registry);
    assert!(
        text.contains(
            "guardrail_webhook_certificate_reloads_total{certificate=\"client_ca\",result=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "guardrail_webhook_certificate_expiry_timestamp_seconds{certificate=\"client_ca\"}"
        ),
        "{text}"
    );
    shutdown.cancel();
}
