//! What hot reload costs per handshake: a full TLS 1.3 handshake (in memory, no
//! sockets) against `ServingTls`'s config (resolver + swappable state) versus a plain
//! `with_single_cert` config, and the same with mTLS through the swappable verifier.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use guardrail_certs::{service_dns_names, Authority, Issued, ServingTls, TlsArgs, Validity};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn chain(issued: &Issued) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain")
}

fn key(issued: &Issued) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key")
}

fn client(ca: &Authority, auth: Option<&Issued>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.expect("CA")).expect("root");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match auth {
        Some(issued) => builder
            .with_client_auth_cert(chain(issued), key(issued))
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One full handshake, pumping records between the two ends in memory.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) {
    let name = ServerName::try_from("guardrail.guardrail-system.svc").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
            s.process_new_packets().expect("server process");
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
            c.process_new_packets().expect("client process");
        }
    }
}

fn benches(crit: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::new("bench CA", Validity::days_from_now(30)).expect("CA");
    let serving = ca
        .issue_serving(
            &service_dns_names("guardrail", "guardrail-system"),
            Validity::days_from_now(30),
        )
        .expect("serving");
    let api_server = ca
        .issue_client("kube-apiserver", Validity::days_from_now(30))
        .expect("client cert");
    std::fs::write(dir.path().join("tls.crt"), &serving.cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &serving.key_pem).expect("write");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let start = |client_ca: bool| {
        let mut args = TlsArgs::files(dir.path().join("tls.crt"), dir.path().join("tls.key"));
        args.client_ca = client_ca.then(|| dir.path().join("ca.crt"));
        let mut registry = prometheus_client::registry::Registry::default();
        runtime
            .block_on(ServingTls::start(&args, &mut registry, shutdown.clone()))
            .expect("start")
            .server_config()
    };
    let reloading = start(false);
    let reloading_mtls = start(true);
    let single = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain(&serving), key(&serving))
            .expect("single cert"),
    );

    let plain = client(&ca, None);
    let mutual = client(&ca, Some(&api_server));
    let mut group = crit.benchmark_group("tls13_full_handshake");
    group.bench_function("single_cert", |b| b.iter(|| handshake(&single, &plain)));
    group.bench_function("reloading_resolver", |b| {
        b.iter(|| handshake(&reloading, &plain))
    });
    group.bench_function("reloading_resolver_mtls", |b| {
        b.iter(|| handshake(&reloading_mtls, &mutual))
    });
    group.finish();
    shutdown.cancel();
}

criterion_group!(handshake_benches, benches);
criterion_main!(handshake_benches);
