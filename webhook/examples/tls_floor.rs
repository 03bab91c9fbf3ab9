//! The webhook's TLS floor for `bench/run`: the listener, rustls configuration and HTTP
//! stack of `guardrail-webhook serve` (same crates, same limits, same ALPN), answering
//! every request with one constant AdmissionReview without reading it: no body
//! handling, JSON, engine, metrics or per-request logging. What the webhook spends
//! per review above this floor is its own.
//!
//!   cargo run --release -p guardrail-webhook --example tls_floor -- \
//!     --listen 127.0.0.1:8443 --tls-cert tls.crt --tls-key tls.key --body answer.json

use std::{net::SocketAddr, path::PathBuf};

use axum::{http::header, routing::post, Router};
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// HTTPS address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The constant response body (an AdmissionReview answer).
    #[arg(long)]
    body: PathBuf,
    #[command(flatten)]
    tls: guardrail_certs::TlsArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // TOKIO_WORKER_THREADS sets the worker count, as for the webhook.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let body = bytes::Bytes::from(std::fs::read(&args.body)?);
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    let tls =
        guardrail_certs::ServingTls::start(&args.tls, &mut registry, shutdown.clone()).await?;
    let net =
        guardrail_net::ListenerMetrics::register(registry.sub_registry_with_prefix("guardrail"));
    let tcp = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on https://{}", tcp.local_addr()?);
    let limits = guardrail_net::Limits::default();
    let listener = guardrail_net::Listener::new(tcp, "https", limits, net);
    // Any path: the harness posts to /validate as it does to the webhook.
    let answer = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let app = Router::new().fallback(post(answer));
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let drain = std::time::Duration::from_secs(1);
    guardrail_webhook::server::tls::serve(listener, tls.server_config(), app, shutdown, drain)
        .await;
    Ok(())
}
