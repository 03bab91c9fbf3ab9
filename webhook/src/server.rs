//! `guardrail-webhook serve`: load config and TLS, listen, answer, drain on SIGTERM.

pub mod routes;
mod shutdown;
pub mod tls;

use std::{
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use routes::{app, metrics_app, AppState};

use crate::{
    config::Config,
    engine::{Engine, EngineOptions},
    error::Error,
    metrics::Metrics,
    signatures::SignatureMetrics,
};

/// Flags of `guardrail-webhook serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Policy config file (YAML). Reloaded when it changes. Default: built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub tls: guardrail_certs::TlsArgs,
    /// HTTPS address for /validate, /healthz, /readyz.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain HTTP address for /metrics, /healthz, /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Larger request bodies are refused with 413.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// A request not answered in this time gets a 503 (keep it below the webhook's
    /// timeoutSeconds so the API server sees our answer, not its own timeout).
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// A request head must arrive within this time from its first byte (a new
    /// connection's first head, TLS handshake included, from the accept).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Idle keep-alive connections are closed after this time (longer than the API
    /// server's 90 s idle pool, so it closes them first).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Open HTTPS connections; more are closed at once.
    #[arg(long, default_value_t = guardrail_net::Limits::default().max_connections)]
    pub max_connections: usize,
    /// After SIGTERM, in-flight requests get this long to finish.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Registry credentials for signature verification: a docker config JSON (the
    /// `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` secret). Re-read on
    /// each config reload. Default: anonymous.
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
}

/// Runs the server until SIGTERM/SIGINT, then drains.
///
/// Prints `listening on https://ADDR` and `metrics on http://ADDR` to stdout once both
/// listeners are bound (useful with port 0).
pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let shutdown = CancellationToken::new();
    shutdown::on_signal(shutdown.clone());

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let options = EngineOptions {
        registry_auth: args.registry_auth.clone(),
        signature_metrics: SignatureMetrics::new(&mut registry),
        request_timeout: Some(args.request_timeout),
        skip_signatures: false,
    };
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let engine = Engine::build(config, &options).map_err(|e| match &args.config {
        Some(path) => e.in_file(path),
        None => e,
    })?;
    let (engine_tx, engine_rx) = watch::channel(Arc::new(engine));
    if let Some(path) = &args.config {
        let reload = crate::config::reload::Reload {
            path: path.clone(),
            engines: engine_tx,
            options,
            metrics: metrics.clone(),
        };
        reload.watch(shutdown.clone())?;
    }
    let tls =
        guardrail_certs::ServingTls::start(&args.tls, &mut registry, shutdown.clone()).await?;

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    let limits = guardrail_net::Limits {
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        ..guardrail_net::Limits::default()
    };
    if let Some((field, why)) = limits.invalid() {
        return Err(Error::Input(format!(
            "invalid listener limit {field}: {why} (--header-read-timeout, --idle-timeout, --max-connections)"
        )));
    }
    let listener = bind(args.listen).await?;
    let metrics_listener = bind(args.metrics_listen).await?;
    let local = listener.local_addr().map_err(Error::Output)?;
    let net =
        guardrail_net::ListenerMetrics::register(registry.sub_registry_with_prefix("guardrail"));
    let listener = guardrail_net::Listener::new(listener, "https", limits, net);
    let metrics_local = metrics_listener.local_addr().map_err(Error::Output)?;

    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        engine: engine_rx,
        metrics,
        ready: ready.clone(),
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
    };
    let metrics_router = metrics_app(state.clone(), Arc::new(registry));
    let https = tokio::spawn(tls::serve(
        listener,
        tls.server_config(),
        app(state),
        shutdown.clone(),
        args.drain_timeout,
    ));
    let metrics_shutdown = shutdown.clone();
    let plain = tokio::spawn(async move {
        let stop = async move { metrics_shutdown.cancelled().await };
        axum::serve(metrics_listener, metrics_router)
            .with_graceful_shutdown(stop)
            .await
    });

    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    info!(%local, %metrics_local, "guardrail-webhook ready");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on https://{local}")?;
    writeln!(stdout, "metrics on http://{metrics_local}")?;
    stdout.flush()?;
    drop(stdout);

    shutdown.cancelled().await;
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    info!("shutting down: draining in-flight requests");
    let _ = https.await;
    let _ = tokio::time::timeout(args.drain_timeout, plain).await;
    info!("stopped");
    Ok(())
}
