//! `guardrail-webhook inject`: the objects as the webhook would leave them, as
//! multi-document YAML on stdout (like `istioctl kube-inject`), so users see and test
//! what injection does offline. Exit 0, or 2 on usage, parse or config errors.

use std::{io::Write, path::PathBuf};

use serde_json::Value;

use super::{Context, Outcome};
use crate::{
    check::{input, EXIT_ALLOWED, EXIT_ERROR},
    config::Config,
    engine::Engine,
    error::Error,
    workload::WorkloadKind,
};

/// Flags of `guardrail-webhook inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Webhook config file (YAML) with the `injection:` section. Default: built-in
    /// defaults, which have no image: pass --image or a config.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sidecar image by digest (overrides `injection.image`).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Treat every pod as opted in, as the namespace label `guardrail.dev/inject=enabled`
    /// does; without it only pods labelled `guardrail.dev/inject: "true"` are injected.
    #[arg(long)]
    pub all: bool,
    /// Files, directories (searched for *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Runs `inject` and returns the exit code.
pub fn run(args: &InjectArgs) -> Result<u8, Error> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(image) = &args.image {
        config.injection.image = Some(image.clone());
    }
    // Signature rules need registries; injection never does.
    config.signatures = Default::default();
    let engine = Engine::new(config).map_err(|e| match &args.config {
        Some(path) => e.in_file(path),
        None => e,
    })?;
    if engine.injector().config().image.is_none() {
        return Err(Error::Input(
            "no sidecar image: set injection.image in --config, or pass --image".into(),
        ));
    }
    let files = input::files(&args.paths).map_err(Error::Input)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for file in files {
        match input::read(&file) {
            Ok(objects) => {
                for object in objects {
                    let (value, notes) = inject_object(&engine, object.value, args.all);
                    for note in notes {
                        eprintln!("{}: {note}", object.source);
                    }
                    docs.push(value);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Ok(EXIT_ERROR);
    }
    let yaml = serde_saphyr::to_string_multiple(&docs)
        .map_err(|e| Error::Input(format!("cannot write YAML: {e}")))?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(EXIT_ALLOWED)
}

/// Where a kind keeps the pod it makes, as pointer tokens.
fn pod_path(kind: WorkloadKind) -> Option<&'static [&'static str]> {
    use WorkloadKind::*;
    match kind {
        Pod => Some(&[]),
        Deployment | ReplicaSet | StatefulSet | DaemonSet | Job => Some(&["spec", "template"]),
        CronJob => Some(&["spec", "jobTemplate", "spec", "template"]),
        // Knative and KServe build their pods later (queue-proxy is added then).
        KnativeService | KnativeConfiguration | KnativeRevision | InferenceService => None,
    }
}

/// One object, injected when it makes pods we inject; with notes for stderr.
pub fn inject_object(engine: &Engine, object: Value, all: bool) -> (Value, Vec<String>) {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind_name = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = WorkloadKind::from_api_version(api_version, kind_name) else {
        return (object, Vec::new());
    };
    let Some(base) = pod_path(kind) else {
        let note = format!(
            "{kind} left as is: its controller creates the pods (with queue-proxy) and the \
             webhook injects them then; pass such a Pod (kubectl get pod -o yaml) to see it"
        );
        return (object, vec![note]);
    };
    let pointer: String = base.iter().map(|t| format!("/{t}")).collect();
    let Some(pod) = object.pointer(&pointer) else {
        return (object, vec![format!("{kind} has no {pointer}: left as is")]);
    };
    let context = Context {
        selected: all,
        namespace: None,
        at_admission: false,
    };
    let injection = engine.injector().inject(pod, base, &context);
    let mut notes = injection.warnings;
    let mut object = object;
    if let Err(e) = json_patch::patch(&mut object, &injection.patch) {
        // A planner bug, never the user's: say so rather than print a half-patched pod.
        notes.push(format!(
            "internal error: the injection patch does not apply: {e}"
        ));
    } else if injection.outcome == Outcome::Injected {
        notes.push("sidecar injected".into());
    }
    (object, notes)
}
