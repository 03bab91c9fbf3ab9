//! Command-line interface of the `guardrail-webhook` binary.

use clap::{Parser, Subcommand};

use crate::{check::CheckArgs, server::ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "guardrail-webhook",
    version,
    about = "Admission webhook that keeps bad model releases out of Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS validating admission webhook.
    Serve(ServeArgs),
    /// Check manifests offline with the same policies as the server.
    Check(CheckArgs),
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
