//! One `admission.k8s.io/v1` AdmissionReview in, one out (same `uid`). A body that is
//! not an AdmissionReview is a [`BadRequest`] (HTTP 400); an AdmissionReview whose object
//! cannot be read is answered with a denial that says why.

use kube::core::{
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    DynamicObject, Status,
};
use serde::Deserialize as _;
use serde_json::Value;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};

use crate::{
    engine::{Engine, Verdict},
    inject::Context,
    policy::PolicyName,
    workload::{Workload, WorkloadKind},
};

const API_VERSION: &str = "admission.k8s.io/v1";

/// A request body that is not a usable AdmissionReview.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    /// Metric label: `bad_json` or `not_admission_review`.
    pub reason: &'static str,
    pub message: String,
}

/// The answer and what to record about it.
pub struct Decision {
    pub review: AdmissionReview<DynamicObject>,
    /// Metric labels.
    pub kind: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
    /// Every finding (policy, enforced), for the violations metric.
    pub findings: Vec<(PolicyName, bool)>,
}

/// Parses `body` and judges the object in it.
pub async fn decide(engine: &Engine, body: &[u8]) -> Result<Decision, BadRequest> {
    let (request, object, old_object) = parse(body)?;
    // Every log line of this review carries who it is about (fields of the caller's
    // span; recording a field a span does not declare is a no-op).
    let span = tracing::Span::current();
    span.record("uid", request.uid.as_str());
    span.record("kind", request.kind.kind.as_str());
    span.record("namespace", request.namespace.as_deref().unwrap_or(""));
    span.record("object", request.name.as_str());
    let operation = operation_label(&request.operation);
    let mut decision = Decision {
        review: AdmissionResponse::from(&request).into_review(),
        kind: "other",
        operation,
        decision: "skip",
        findings: Vec::new(),
    };
    if matches!(request.operation, Operation::Delete | Operation::Connect) {
        return Ok(decision);
    }
    let Some(kind) = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind) else {
        return Ok(decision);
    };
    decision.kind = kind.metric_label();
    match (kind, request.sub_resource.as_deref()) {
        (_, None | Some("")) | (WorkloadKind::Pod, Some("ephemeralcontainers")) => {}
        // Status, scale and the like carry no new images or probes.
        _ => return Ok(decision),
    }
    let response = AdmissionResponse::from(&request);
    let Some(object) = object.filter(|o| !o.is_null()) else {
        decision.decision = "deny";
        decision.review = deny(response, "request.object is missing".into(), vec![]);
        return Ok(decision);
    };
    let workload = match read(kind, &object, request.namespace.as_deref()) {
        Ok(workload) => workload,
        Err(message) => {
            decision.decision = "deny";
            decision.review = deny(response, format!("Guardrail {message}"), vec![]);
            return Ok(decision);
        }
    };
    let old = match request.operation {
        Operation::Update => {
            old_object.and_then(|o| read(kind, &o, request.namespace.as_deref()).ok())
        }
        _ => None,
    };
    // Old and new are judged concurrently: each may wait on registries for up to the
    // signature budget, and the two together must still fit in one budget.
    let verdict = match &old {
        Some(old) => {
            let (new, old) = futures::join!(engine.evaluate(&workload), engine.evaluate(old));
            new.grandfather(&old)
        }
        None => engine.evaluate(&workload).await,
    };
    decision.findings = verdict
        .findings
        .iter()
        .map(|f| (f.violation.policy, f.enforced))
        .collect();
    decision.decision = label(&verdict);
    let object_name = format!(
        "{} {}{}",
        kind,
        workload
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        workload.name
    );
    decision.review = answer(response, &verdict, &object_name);
    Ok(decision)
}

/// The answer of `/mutate` and what to record about it.
pub struct Mutation {
    /// The AdmissionReview, with `patch` (base64) and `patchType` when there is one.
    pub review: Value,
    /// `result` label of `guardrail_injections_total`; `skip` when not a pod CREATE.
    pub outcome: &'static str,
}

/// Parses `body` and plans the sidecar injection into the pod in it. Always allows:
/// whether the pod may run is the validating webhook's call; a pod we cannot inject
/// is admitted as it is, with a warning saying why.
pub fn mutate(engine: &Engine, body: &[u8]) -> Result<Mutation, BadRequest> {
    let (request, object, _) = parse(body)?;
    let span = tracing::Span::current();
    span.record("uid", request.uid.as_str());
    span.record("kind", request.kind.kind.as_str());
    span.record("namespace", request.namespace.as_deref().unwrap_or(""));
    span.record("object", request.name.as_str());
    let mut response = AdmissionResponse::from(&request);
    let is_pod_create = request.operation == Operation::Create
        && request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.as_deref().unwrap_or("").is_empty();
    let object = object.filter(|o| o.is_object());
    let (outcome, patch) = match (is_pod_create, object) {
        (false, _) => ("skip", None),
        (true, None) => {
            response.warnings = Some(vec![
                "Guardrail sidecar not injected: request.object is missing".into(),
            ]);
            ("conflict", None)
        }
        (true, Some(pod)) => {
            let context = Context {
                selected: true,
                namespace: request.namespace.as_deref().filter(|n| !n.is_empty()),
                at_admission: true,
            };
            let injection = engine.injector().inject(&pod, &[], &context);
            if !injection.warnings.is_empty() {
                response.warnings = Some(injection.warnings);
            }
            let patch = (!injection.patch.0.is_empty()).then_some(injection.patch);
            (injection.outcome.as_str(), patch)
        }
    };
    let mut review = serde_json::to_value(response.into_review()).map_err(|e| BadRequest {
        reason: "not_admission_review",
        message: format!("cannot encode the answer: {e}"),
    })?;
    if let (Some(patch), Some(answer)) = (patch, review.get_mut("response")) {
        // `patch` is base64 of the JSON Patch, as the API server reads Go's []byte.
        let bytes = serde_json::to_vec(&patch).expect("a JSON Patch serialises");
        answer["patch"] = Value::String(BASE64.encode(bytes));
        answer["patchType"] = Value::String("JSONPatch".into());
    }
    Ok(Mutation { review, outcome })
}

type Parsed = (
    AdmissionRequest<DynamicObject>,
    Option<Value>,
    Option<Value>,
);

fn parse(body: &[u8]) -> Result<Parsed, BadRequest> {
    let bad = |message: String| BadRequest {
        reason: "not_admission_review",
        message,
    };
    let mut value: Value = serde_json::from_slice(body).map_err(|e| BadRequest {
        reason: "bad_json",
        message: format!("request body is not JSON: {e}"),
    })?;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "AdmissionReview" || api_version != API_VERSION {
        return Err(bad(format!(
            "expected an {API_VERSION} AdmissionReview, got apiVersion {api_version:?} kind {kind:?} \
             (set admissionReviewVersions: [v1] in the webhook configuration)"
        )));
    }
    // The objects are read separately so an unreadable object gets a denial, not a 400.
    let request = value
        .get_mut("request")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("AdmissionReview has no request object".into()))?;
    let object = request.remove("object");
    let old_object = request.remove("oldObject");
    // Path tracking costs on every value: only for the message of a review that failed.
    let review: AdmissionReview<DynamicObject> = match AdmissionReview::deserialize(&value) {
        Ok(review) => review,
        Err(_) => serde_path_to_error::deserialize(&value).map_err(|e| {
            bad(format!(
                "invalid AdmissionReview at {}: {}",
                e.path(),
                e.inner()
            ))
        })?,
    };
    let request = review
        .try_into()
        .map_err(|_| bad("AdmissionReview has no request".into()))?;
    Ok((request, object, old_object))
}

/// The request's namespace wins over the object's: the API server sets it, while the
/// object is the requester's own words (and `scope.exemptNamespaces` must not be
/// claimable by writing `metadata.namespace: kube-system`).
fn read(kind: WorkloadKind, object: &Value, namespace: Option<&str>) -> Result<Workload, String> {
    let mut workload = Workload::read(kind, object).map_err(|e| e.to_string())?;
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        workload.namespace = Some(namespace.to_string());
    }
    Ok(workload)
}

fn answer(
    response: AdmissionResponse,
    verdict: &Verdict,
    object: &str,
) -> AdmissionReview<DynamicObject> {
    let warnings = verdict.warnings();
    if verdict.allowed() {
        let mut response = response;
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        response.into_review()
    } else {
        deny(response, verdict.denial_message(object), warnings)
    }
}

fn deny(
    response: AdmissionResponse,
    message: String,
    warnings: Vec<String>,
) -> AdmissionReview<DynamicObject> {
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "Forbidden").with_code(403);
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.into_review()
}

fn label(verdict: &Verdict) -> &'static str {
    match (
        verdict.skipped.is_some(),
        verdict.allowed(),
        verdict.findings.is_empty(),
    ) {
        (true, _, _) => "skip",
        (_, false, _) => "deny",
        (_, true, true) if verdict.notices.is_empty() => "allow",
        (_, true, _) => "warn",
    }
}

fn operation_label(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
    }
}

#[cfg(test)]
mod tests;
