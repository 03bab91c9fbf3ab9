//! Command-line interface of the `guardrail-webhook` binary.

use clap::{Parser, Subcommand};

use crate::{check::CheckArgs, inject::command::InjectArgs, server::ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "guardrail-webhook",
    version,
    about = "Admission webhook that keeps bad model releases out of Kubernetes"
)]
pub struct Cli {
    /// Log format on stderr: `text` (default; for people) or `json` (one object per
    /// line: timestamp, level, target, message and the span's fields, such as the
    /// AdmissionReview's uid, kind, namespace, name and decision).
    #[arg(long, global = true, env = "GUARDRAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook (/validate and /mutate).
    Serve(ServeArgs),
    /// Check manifests offline with the same policies as the server.
    Check(CheckArgs),
    /// Print manifests with the sidecar injected, as the webhook's /mutate would.
    Inject(InjectArgs),
    /// TLS material for the webhook.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a CA and a serving certificate for the webhook's Service.
    Generate(guardrail_certs::GenerateArgs),
}
