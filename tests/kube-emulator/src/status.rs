//! Errors as the API server reports them: a `meta.k8s.io/v1` `Status` body.
//!
//! Every handler failure becomes an [`ApiError`]; it is turned into an HTTP response in
//! exactly one place (`server::respond`), so clients always see the real shape.

use serde_json::{json, Value};

/// One field-level cause of an error (`details.causes[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`, `FieldManagerConflict`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// Dotted field path, e.g. `spec.traffic[0].percent`.
    pub field: String,
}

/// A failed request, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `details` target: (group, kind/plural, name); omitted when `None`.
    pub details: Option<Box<(String, String, String)>>,
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(Box::new((
            group.to_string(),
            kind.to_string(),
            name.to_string(),
        )));
        self
    }

    /// `<plural>.<group> "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(group, plural, name)
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(group, plural, name)
    }

    /// The optimistic-concurrency failure clients retry on.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 422 with one cause per field, message formatted like the API server's.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let kind_group = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = format!(
            "{kind_group} \"{name}\" is invalid: {}",
            join_causes(&summary)
        );
        let mut err = Self::new(422, "Invalid", message).with_details(group, kind, name);
        err.causes = causes;
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(
        verb: &str,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        user: &str,
    ) -> Self {
        let subject = if name.is_empty() {
            qualified(plural, group)
        } else {
            format!("{} \"{name}\"", qualified(plural, group))
        };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{plural}\" \
                 in API group \"{group}\" {scope}"
            ),
        )
        .with_details(group, plural, name)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// A Status for an injected error code (fault injection).
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(
            code,
            reason,
            format!("injected fault: the server answered {code} on purpose (kube-emulator faults)"),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let (group, kind, name) = details.as_ref();
            let mut details = json!({ "name": name, "kind": kind });
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            if !self.causes.is_empty() {
                details["causes"] = Value::Array(
                    self.causes
                        .iter()
                        .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
                        .collect(),
                );
            }
            status["details"] = details;
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

/// `services.serving.knative.dev` / `secrets`.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn join_causes(parts: &[String]) -> String {
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}
