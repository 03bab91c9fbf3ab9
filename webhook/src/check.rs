//! `guardrail-webhook check`: the same engine as the server, over manifests on disk.
//! Exit 0 when everything is allowed, 1 when anything is denied, 2 on usage or parse
//! errors.

pub(crate) mod input;
mod output;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::{
    config::Config,
    engine::{Engine, EngineOptions},
    error::Error,
    policy::PolicyName,
    workload::{Workload, WorkloadKind},
};

pub use input::{parse as parse_documents, SourceObject};

/// Flags of `guardrail-webhook check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Policy config file (YAML). Default: built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Registry credentials for signature verification (docker config JSON).
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// Do not verify image signatures (no registry is contacted); a notice says so.
    #[arg(long)]
    pub skip_signatures: bool,
    /// Files, directories (searched for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes.
pub const EXIT_ALLOWED: u8 = 0;
pub const EXIT_DENIED: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

/// The result for one object, as printed by `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub allowed: bool,
    pub violations: Vec<ViolationReport>,
    /// Not violations, never deny: e.g. an image allowed unverified by `onError: allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<WarningReport>,
    /// `file:line` of the object.
    pub source: String,
    /// Why the object was not checked (scope), if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationReport {
    pub policy: PolicyName,
    pub container: Option<String>,
    pub message: String,
    pub field: String,
    pub hint: String,
    /// `enforce` (denies) or `audit` (warns).
    pub mode: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarningReport {
    pub policy: PolicyName,
    pub container: Option<String>,
    pub message: String,
    pub field: String,
}

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct Report {
    pub objects: Vec<ObjectReport>,
    /// Objects of kinds that make no pods (ConfigMaps, Services…), by `file:line kind`.
    pub ignored: Vec<String>,
    /// Files or objects that could not be read.
    pub errors: Vec<String>,
    /// Some signature could not be checked because a registry could not be read.
    pub unverifiable: bool,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            EXIT_ERROR
        } else if self.objects.iter().any(|o| !o.allowed) {
            EXIT_DENIED
        } else {
            EXIT_ALLOWED
        }
    }
}

/// Runs `check`, prints the report, and returns the exit code.
pub async fn run(args: &CheckArgs) -> Result<u8, Error> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let options = EngineOptions {
        registry_auth: args.registry_auth.clone(),
        skip_signatures: args.skip_signatures,
        ..EngineOptions::unregistered()
    };
    let rules = config.signatures.rules.len();
    let engine = Engine::build(config, &options).map_err(|e| match &args.config {
        Some(path) => e.in_file(path),
        None => e,
    })?;
    if args.skip_signatures {
        // On stderr so `--output json` stays parseable; never silent.
        eprintln!(
            "notice: image signatures are NOT verified (--skip-signatures); {rules} signature              rule(s) in the config were not applied"
        );
    }
    let files = input::files(&args.paths).map_err(Error::Input)?;
    let mut report = Report::default();
    for file in files {
        match input::read(&file) {
            Ok(objects) => {
                for object in objects {
                    judge(&engine, object, &mut report).await;
                }
            }
            Err(e) => report.errors.push(e),
        }
    }
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Format::Text => output::text(&report, &mut stdout)?,
        Format::Json => output::json(&report, &mut stdout)?,
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    if report.unverifiable {
        eprintln!(
            "notice: some signatures could not be verified because a registry was unreachable \
             or refused us; pass --registry-auth FILE for private registries, or \
             --skip-signatures to check everything else offline"
        );
    }
    Ok(report.exit_code())
}

/// Judges one object into `report`.
pub async fn judge(engine: &Engine, object: SourceObject, report: &mut Report) {
    let api_version = object.value.get("apiVersion").and_then(Value::as_str);
    let kind = object.value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind_name)) = (api_version, kind) else {
        report.errors.push(format!(
            "{}: not a Kubernetes object: apiVersion and kind are required",
            object.source
        ));
        return;
    };
    let Some(kind) = WorkloadKind::from_api_version(api_version, kind_name) else {
        report
            .ignored
            .push(format!("{} {api_version}/{kind_name}", object.source));
        return;
    };
    let workload = match Workload::read(kind, &object.value) {
        Ok(workload) => workload,
        Err(e) => return report.errors.push(format!("{}: {e}", object.source)),
    };
    let verdict = engine.evaluate(&workload).await;
    report.unverifiable |= verdict.unverifiable;
    report.objects.push(ObjectReport {
        kind: kind.kind().to_string(),
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        allowed: verdict.allowed(),
        violations: verdict
            .findings
            .iter()
            .map(|f| ViolationReport {
                policy: f.violation.policy,
                container: f.violation.container.clone(),
                message: f.violation.message.clone(),
                field: f.violation.field.clone(),
                hint: f.violation.hint.clone(),
                mode: if f.enforced { "enforce" } else { "audit" },
            })
            .collect(),
        warnings: verdict
            .notices
            .iter()
            .map(|v| WarningReport {
                policy: v.policy,
                container: v.container.clone(),
                message: v.message.clone(),
                field: v.field.clone(),
            })
            .collect(),
        source: object.source,
        skipped: verdict.skipped,
    });
}

#[cfg(test)]
mod tests;
