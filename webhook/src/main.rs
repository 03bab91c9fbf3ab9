//! `guardrail-webhook`: `serve`, `check`, `certs generate`.

use std::process::ExitCode;

use clap::Parser;
use guardrail_webhook::{
    check::{self, EXIT_ERROR},
    cli::{CertsCommand, Cli, Command, LogFormat},
    server,
};
use tracing_subscriber::EnvFilter;

/// mimalloc's per-thread free lists instead of glibc's arenas: a review allocates a
/// JSON tree of a few hundred nodes and frees it (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries `check` output and the listen addresses.
    // sigstore warns on every registry without the referrers API.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sigstore=error"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Every error of this crate already prints its cause; `{:#}` would repeat it.
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            runtime.block_on(server::serve(args))?;
            Ok(0)
        }
        Command::Check(args) => {
            // sigstore (keyless signature rules) needs a process-wide provider too.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            Ok(runtime.block_on(check::run(&args))?)
        }
        Command::Inject(args) => Ok(guardrail_webhook::inject::command::run(&args)?),
        Command::Certs {
            command: CertsCommand::Generate(args),
        } => {
            guardrail_certs::generate(&args)?;
            Ok(0)
        }
    }
}
