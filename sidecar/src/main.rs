//! `guardrail-sidecar`: see `docs/sidecar.md`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Parser;
use guardrail_sidecar::{guardrails, shutdown, Config, Identity, Sidecar};

/// In-pod reverse proxy that measures a model revision's errors, latency and output
/// sanity.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Proxy listen address [config `listen`, default 0.0.0.0:8090].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Upstream model server URL [config `upstream`, default http://127.0.0.1:8080].
    #[arg(long, env = "GUARDRAIL_UPSTREAM")]
    upstream: Option<String>,
    /// The model's readiness probe as Kubernetes probe JSON (httpGet, tcpSocket or
    /// grpc), run in the background for `/readyz`; the injector sets it
    /// [config `upstreamProbe`].
    #[arg(long, env = "GUARDRAIL_UPSTREAM_PROBE")]
    upstream_probe: Option<String>,
    /// Measure only: no judging, rollback or promotion (the injector sets it when the
    /// pod has no API token) [config `guardrails.enabled: false`].
    #[arg(long, env = "GUARDRAIL_MEASURE_ONLY")]
    measure_only: bool,
    /// Admin listen address [config `adminListen`, default 0.0.0.0:9095].
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// YAML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The config as text (YAML or JSON) instead of a file; the injector passes the
    /// webhook's `injection.sidecarConfig` this way.
    #[arg(long, env = "GUARDRAIL_SIDECAR_CONFIG", conflicts_with = "config")]
    config_text: Option<String>,
    /// Knative revision.
    #[arg(long, env = "K_REVISION", default_value = "")]
    revision: String,
    /// Knative configuration.
    #[arg(long, env = "K_CONFIGURATION", default_value = "")]
    configuration: String,
    /// Knative service.
    #[arg(long, env = "K_SERVICE", default_value = "")]
    service: String,
    /// Namespace (downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    namespace: String,
    /// Pod name (downward API).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pod: String,
    /// Seconds after start whose request latencies the latency guardrails ignore (a cold
    /// start is not a regression); set it from the pod annotation
    /// `guardrail.dev/warmup-seconds` with the downward API (docs/guardrails.md)
    /// [config `guardrails.warmup`, default 0].
    #[arg(long, env = "GUARDRAIL_WARMUP_SECONDS")]
    warmup_seconds: Option<String>,
    /// Log the guardrails' Kubernetes patches instead of sending them.
    #[arg(long)]
    dry_run: bool,
    /// Runtime worker threads. One is the default: at model-serving rates a second
    /// worker mostly wakes up to find nothing (a futex and a context switch per request),
    /// and one core still proxies tens of thousands of checked requests per second.
    #[arg(long, env = "TOKIO_WORKER_THREADS", default_value_t = 1)]
    workers: usize,
    /// Log format on stderr: `text` (default) or `json` (one object per line:
    /// timestamp, level, target, message and span fields such as the request id).
    #[arg(long, env = "GUARDRAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// One log line per request (target `access`: request id, trace id, method, path,
    /// status, duration, revision) [config `accessLog`, default off].
    #[arg(long, env = "GUARDRAIL_ACCESS_LOG")]
    access_log: bool,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut config = match (&args.config, &args.config_text) {
        (Some(path), _) => Config::from_file(path)?,
        (None, Some(text)) => Config::from_yaml(text)
            .context("--config-text (GUARDRAIL_SIDECAR_CONFIG) is not a valid sidecar config")?,
        (None, None) => Config::default(),
    };
    config.listen = args.listen.unwrap_or(config.listen);
    config.admin_listen = args.admin_listen.unwrap_or(config.admin_listen);
    config.guardrails.dry_run |= args.dry_run;
    config.access_log |= args.access_log;
    if let Some(warmup) = args
        .warmup_seconds
        .as_deref()
        .map(guardrails::config::parse_warmup_seconds)
        .transpose()?
        .flatten()
    {
        config.guardrails.warmup = warmup;
    }
    if let Some(upstream) = args.upstream {
        config.upstream = upstream;
    }
    if let Some(probe) = args
        .upstream_probe
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        config.upstream_probe = Some(serde_json::from_str(probe).context(
            "--upstream-probe (GUARDRAIL_UPSTREAM_PROBE) is not a Kubernetes probe in JSON",
        )?);
    }
    if args.measure_only {
        config.guardrails.enabled = false;
    }
    // Flags change the config after its validation at load.
    config.validate()?;
    let identity = Identity {
        revision: args.revision,
        configuration: args.configuration,
        service: args.service,
        namespace: args.namespace,
        pod: args.pod,
    };
    let sidecar = Sidecar::new(config, identity)?;
    let (listener, admin) = sidecar.bind().await?;
    // One machine-readable line on stdout, so callers that asked for port 0 learn the
    // ports; logs go to stderr.
    println!(
        "listening proxy={} admin={}",
        listener.local_addr().context("proxy listener address")?,
        admin.local_addr().context("admin listener address")?
    );
    sidecar.serve(listener, admin, shutdown::signal()).await?;
    Ok(())
}
