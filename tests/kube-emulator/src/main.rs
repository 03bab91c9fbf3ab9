//! `kube-emulator`: run the emulated API server standalone (demo scripts, manual tests).
//!
//! ```text
//! kube-emulator --listen 127.0.0.1:6443 --kubeconfig-out /tmp/kubeconfig --seed objects.yaml
//! ```
//! Runs until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "kube-emulator",
    about = "HTTP-level Kubernetes API emulator (test support)"
)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    kubeconfig_out: PathBuf,
    /// YAML files whose objects are created at start (repeatable).
    #[arg(long)]
    seed: Vec<PathBuf>,
    /// Bearer token to require (default: random).
    #[arg(long, env = "KUBE_EMULATOR_TOKEN")]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let options = kube_emulator::Options {
        listen: args.listen,
        token: args.token,
        ..Default::default()
    };
    let emu = kube_emulator::Emulator::start(options)
        .await
        .context("starting the emulator")?;
    for path in &args.seed {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading seed file {}", path.display()))?;
        let objects = emu
            .apply_yaml(&text)
            .with_context(|| format!("seeding from {}", path.display()))?;
        tracing::info!(file = %path.display(), objects = objects.len(), "seeded");
    }
    emu.write_kubeconfig(&args.kubeconfig_out)?;
    tracing::info!(url = %emu.url(), kubeconfig = %args.kubeconfig_out.display(), "kube-emulator serving");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    emu.stop().await;
    Ok(())
}
