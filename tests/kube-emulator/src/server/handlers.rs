//! Resource verbs: get, list, watch, create, update, patch (merge, JSON, strategic,
//! apply), delete and deletecollection, on the main resource or `/status`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::route::ResourceRoute;
use super::{json_response, table, watch, Body, Shared};
use crate::kinds::Kind;
use crate::meta::meta_str;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::{Patch, WriteOptions};
use crate::status::ApiError;

/// One request's inputs.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub query: &'a Query,
    pub content_type: &'a str,
    pub user_agent: &'a str,
    /// `Accept` header: `kubectl get` asks for a Table.
    pub accept: &'a str,
    pub body: &'a Bytes,
    pub cancel: &'a CancellationToken,
}

pub(crate) fn dispatch(ctx: &Ctx<'_>, r: &ResourceRoute) -> Result<Response<Body>, ApiError> {
    let kind = ctx
        .shared
        .lock()
        .kinds
        .by_path(&r.group, &r.version, &r.plural)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({} {})",
                    r.verb, r.plural
                ),
            )
        })?;
    let collection_verb = matches!(r.verb, "list" | "watch" | "deletecollection" | "create");
    let scope_ok = if kind.namespaced {
        r.namespace.is_some() || (collection_verb && r.verb != "create")
    } else {
        r.namespace.is_none()
    };
    let sub_ok = r.subresource.is_empty()
        || (r.subresource == "status" && kind.status_subresource && r.name.is_some());
    if !scope_ok || !sub_ok {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or("");
    let name = r.name.as_deref().unwrap_or("");
    match r.verb {
        "get" => {
            let state = ctx.shared.lock();
            let obj = state.read(&kind, ns, name)?;
            if table::wanted(ctx.accept) {
                let rv = state.store.resource_version().to_string();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::render(&kind, &[obj], &rv),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        "list" => list(ctx, &kind, r.namespace.as_deref()),
        "watch" => watch::start(ctx.shared, ctx.query, ctx.cancel, kind, r.namespace.clone()),
        "create" if r.name.is_none() => {
            let obj = parse_object(ctx, &kind)?;
            let created = ctx
                .shared
                .lock()
                .create(&kind, ns, obj, &write_options(ctx, r))?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        "update" => {
            let obj = parse_object(ctx, &kind)?;
            let updated =
                ctx.shared
                    .lock()
                    .replace(&kind, ns, name, obj, &write_options(ctx, r))?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        "patch" => patch(ctx, r, &kind, ns, name),
        "delete" => {
            let options: Value = if ctx.body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(ctx.body).map_err(|e| {
                    ApiError::bad_request(format!("DeleteOptions body does not parse: {e}"))
                })?
            };
            let dry_run = dry_run(ctx.query)
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            let deleted = ctx
                .shared
                .lock()
                .delete(&kind, ns, name, &options, dry_run)?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        "deletecollection" => {
            let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
            let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))?;
            let mut state = ctx.shared.lock();
            let targets: Vec<(String, String)> = state
                .store
                .list(&kind, r.namespace.as_deref())
                .into_iter()
                .filter(|s| labels.matches(&s.object) && fields.matches(&s.object))
                .map(|s| {
                    (
                        meta_str(&s.object, "namespace").to_string(),
                        meta_str(&s.object, "name").to_string(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (ns, name) in targets {
                items.push(state.delete(&kind, &ns, &name, &json!({}), dry_run(ctx.query))?);
            }
            let rv = state.store.resource_version().to_string();
            Ok(json_response(
                StatusCode::OK,
                &list_body(&kind, items, &rv, None),
            ))
        }
        other => Err(ApiError::method_not_allowed(other)),
    }
}

fn patch(
    ctx: &Ctx<'_>,
    r: &ResourceRoute,
    kind: &Arc<Kind>,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let media = ctx.content_type.split(';').next().unwrap_or("").trim();
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(ctx.body)
            .map_err(|e| ApiError::bad_request(format!("the patch body is not valid JSON: {e}")))
    };
    let patch = match media {
        "application/merge-patch+json" => Patch::Merge(json_body()?),
        "application/strategic-merge-patch+json" => Patch::Strategic(json_body()?),
        "application/json-patch+json" => Patch::Json(json_body()?),
        "application/apply-patch+yaml" => {
            if ctx.query.get("fieldManager").unwrap_or("").is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let text = std::str::from_utf8(ctx.body).map_err(|e| {
                ApiError::bad_request(format!("apply configuration is not UTF-8: {e}"))
            })?;
            // Clients send JSON (a YAML subset); parse it exactly, YAML otherwise.
            let config: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
            };
            if !config.is_object() {
                return Err(ApiError::bad_request(
                    "apply configuration must be an object",
                ));
            }
            Patch::Apply {
                config,
                force: ctx.query.flag("force"),
            }
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    let mut state = ctx.shared.lock();
    let existed = state.store.get(kind, ns, name).is_some();
    let patched = state.patch(kind, ns, name, patch, &write_options(ctx, r))?;
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(code, &patched))
}

fn list(
    ctx: &Ctx<'_>,
    kind: &Arc<Kind>,
    namespace: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))?;
    let state = ctx.shared.lock();
    if let Some(ns) = namespace {
        state.check_namespace(kind, ns)?;
    }
    let matching: Vec<Value> = state
        .store
        .list(kind, namespace)
        .into_iter()
        .filter(|s| labels.matches(&s.object) && fields.matches(&s.object))
        .map(|s| s.object.clone())
        .collect();
    let rv = state.store.resource_version().to_string();
    drop(state);
    // Pagination: the continue token is the offset of the next item.
    let start: usize = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .strip_prefix("emu-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
        None => 0,
    };
    let limit: usize = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(matching.len());
    let next = (end < matching.len()).then(|| format!("emu-{end}"));
    let items = matching
        .get(start.min(matching.len())..end)
        .unwrap_or_default()
        .to_vec();
    if table::wanted(ctx.accept) {
        let mut table = table::render(kind, &items, &rv);
        if let Some(next) = next {
            table["metadata"]["continue"] = json!(next);
        }
        return Ok(json_response(StatusCode::OK, &table));
    }
    Ok(json_response(
        StatusCode::OK,
        &list_body(kind, items, &rv, next),
    ))
}

fn list_body(kind: &Kind, items: Vec<Value>, rv: &str, next: Option<String>) -> Value {
    let mut metadata = json!({ "resourceVersion": rv });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    json!({ "kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": metadata, "items": items })
}

fn parse_object(ctx: &Ctx<'_>, kind: &Kind) -> Result<Value, ApiError> {
    let obj: Value = if ctx.content_type.contains("yaml") {
        let text = std::str::from_utf8(ctx.body)
            .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else if ctx.content_type.contains("protobuf") || ctx.content_type.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "kube-emulator accepts JSON or YAML bodies only, got {:?}; send application/json",
                ctx.content_type
            ),
        ));
    } else {
        serde_json::from_slice(ctx.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let type_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != kind.api_version())
        || (!type_kind.is_empty() && type_kind != kind.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the body's apiVersion/kind {api_version:?}/{type_kind:?} does not match the resource {:?}/{:?} of the URL",
            kind.api_version(),
            kind.kind
        )));
    }
    Ok(obj)
}

fn write_options(ctx: &Ctx<'_>, r: &ResourceRoute) -> WriteOptions {
    let manager = match ctx.query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        // The API server's default: the user agent up to the first '/'.
        None => ctx
            .user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    };
    WriteOptions {
        manager,
        subresource: r.subresource.clone(),
        dry_run: dry_run(ctx.query),
        strict: ctx.query.get("fieldValidation") == Some("Strict"),
    }
}

fn dry_run(query: &Query) -> bool {
    query.get("dryRun") == Some("All")
}
