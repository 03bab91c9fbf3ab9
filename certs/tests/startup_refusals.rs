//! `ServingTls::start` refuses bad material with a message naming the file and the
//! problem, instead of serving something the API server will reject.

mod common;

use std::path::Path;

use common::{names, validity, write, NAMESPACE, SERVICE};
use guardrail_certs::{CertError, ServingTls, TlsArgs};
use tokio_util::sync::CancellationToken;

fn args(dir: &Path) -> TlsArgs {
    common::file_args(dir.join("tls.crt"), dir.join("tls.key"))
}

async fn start(args: &TlsArgs) -> Result<ServingTls, CertError> {
    let (tls, _registry) = common::start(args, &CancellationToken::new()).await?;
    Ok(tls)
}

async fn refusal(args: &TlsArgs) -> String {
    match start(args).await {
        Ok(_) => panic!("start accepted bad material"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn valid_material_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = common::serving(&ca);
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let tls = start(&args(dir.path())).await.expect("valid pair");
    assert_eq!(
        tls.serving_certificate().serial,
        common::serial_of(&dir.path().join("tls.crt"))
    );
    let config = tls.server_config();
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = ca
        .issue_serving(&names(), validity(-10, -1))
        .expect("expired pair");
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let message = refusal(&args(dir.path())).await;
    assert!(message.contains("tls.crt"), "{message}");
    assert!(message.contains("expired at"), "{message}");
}

#[tokio::test]
async fn not_yet_valid_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = ca
        .issue_serving(&names(), validity(2, 10))
        .expect("future pair");
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let message = refusal(&args(dir.path())).await;
    assert!(message.contains("is not valid before"), "{message}");
}

#[tokio::test]
async fn san_mismatch_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = ca
        .issue_serving(
            &guardrail_certs::service_dns_names("other", NAMESPACE),
            validity(-1, 30),
        )
        .expect("pair for another service");
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let message = refusal(&args(dir.path())).await;
    assert!(message.contains("tls.crt"), "{message}");
    assert!(
        message.contains("do not cover [guardrail, guardrail.guardrail-system"),
        "{message}"
    );
    // Without a configured Service there is nothing to check names against.
    let plain = TlsArgs::files(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    start(&plain).await.expect("no service configured");
}

#[tokio::test]
async fn wrong_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = common::serving(&ca);
    let other = common::serving(&ca);
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &other.key_pem);
    let message = refusal(&args(dir.path())).await;
    assert!(message.contains("tls.key"), "{message}");
    assert!(
        message.contains("does not match the certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn unreadable_and_garbage_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = refusal(&args(dir.path())).await;
    assert!(
        message.contains("cannot read certificate from") && message.contains("tls.crt"),
        "{message}"
    );

    write(&dir.path().join("tls.crt"), "not a certificate\n");
    write(&dir.path().join("tls.key"), "not a key\n");
    let message = refusal(&args(dir.path())).await;
    assert!(message.contains("no CERTIFICATE block found"), "{message}");

    let ca = common::ca(30);
    let pair = common::serving(&ca);
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    let message = refusal(&args(dir.path())).await;
    assert!(
        message.contains("tls.key") && message.contains("no usable PEM private key"),
        "{message}"
    );
}

#[tokio::test]
async fn client_ca_must_be_a_valid_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::ca(30);
    let pair = common::serving(&ca);
    write(&dir.path().join("tls.crt"), &pair.cert_pem);
    write(&dir.path().join("tls.key"), &pair.key_pem);
    let mut args = args(dir.path());
    args.client_ca = Some(dir.path().join("client-ca.crt"));
    let message = refusal(&args).await;
    assert!(
        message.contains("cannot read client CA bundle"),
        "{message}"
    );

    // A leaf is not a CA.
    write(&dir.path().join("client-ca.crt"), &pair.cert_pem);
    let message = refusal(&args).await;
    assert!(message.contains("is not a CA"), "{message}");
}

#[tokio::test]
async fn flag_combinations_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut only_name = TlsArgs::files(dir.path().join("a"), dir.path().join("b"));
    only_name.service_name = Some(SERVICE.into());
    let message = refusal(&only_name).await;
    assert!(
        message.contains("--service-name/--service-namespace"),
        "{message}"
    );

    let mut managed = args(dir.path());
    managed.manage_webhook_configurations = vec!["guardrail".into()];
    managed.renew_before_days = managed.cert_days;
    let message = refusal(&managed).await;
    assert!(message.contains("--renew-before-days"), "{message}");
}
