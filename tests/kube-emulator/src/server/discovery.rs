//! Non-resource endpoints: discovery (`/api`, `/apis`, group-version resource lists),
//! `/version`, health, and 404 for OpenAPI (clients fall back without it).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::{json_response, Body, Shared};
use crate::status::ApiError;

pub(crate) fn serve(
    shared: &Shared,
    method: &Method,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let kinds = shared.lock().kinds.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = match segs.as_slice() {
        ["healthz" | "livez" | "readyz"] => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
            *r.status_mut() = StatusCode::OK;
            return Ok(r);
        }
        ["version"] => json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-kube-emulator", "gitCommit": "",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64",
        }),
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string() }],
        }),
        ["apis"] => {
            let groups: Vec<Value> = kinds
                .group_versions()
                .iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, v)| group(g, v))
                .collect();
            json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
        }
        ["apis", g] => match kinds.group_versions().iter().find(|(group, _)| group == g) {
            Some((g, v)) => {
                let mut out = group(g, v);
                out["kind"] = json!("APIGroup");
                out["apiVersion"] = json!("v1");
                out
            }
            None => return Err(not_found(path)),
        },
        ["api", v] | ["apis", _, v] => {
            let g = if segs[0] == "api" { "" } else { segs[1] };
            let mut resources = Vec::new();
            for k in kinds.all.iter().filter(|k| k.group == g && k.version == *v) {
                resources.push(json!({
                    "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                    "shortNames": k.short_names,
                }));
                if k.status_subresource {
                    resources.push(json!({ "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"] }));
                }
            }
            if resources.is_empty() {
                return Err(not_found(path));
            }
            let group_version = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
        }
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            for (g, v) in kinds.group_versions() {
                let gv = if g.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{g}/{v}")
                };
                paths.insert(
                    gv.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash=kube-emulator") }),
                );
            }
            json!({ "paths": paths })
        }
        ["openapi", "v3", "api", v] | ["openapi", "v3", "apis", _, v] => {
            let g = if segs[2] == "api" { "" } else { segs[3] };
            openapi_v3(&kinds, g, v).ok_or_else(|| not_found(path))?
        }
        _ => return Err(not_found(path)),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// A minimal OpenAPI v3 document per group-version: enough for kubectl to see that
/// PATCH supports `fieldValidation` and so validate on the server (this server), with
/// the real CRD schemas, instead of downloading schemas to validate client-side.
fn openapi_v3(kinds: &crate::kinds::Kinds, g: &str, v: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for k in kinds.all.iter().filter(|k| k.group == g && k.version == v) {
        let prefix = if g.is_empty() {
            format!("/api/{v}")
        } else {
            format!("/apis/{g}/{v}")
        };
        let scope = if k.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({ "group": g, "version": v, "kind": k.kind });
        let param = |name: &str| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } });
        let params = json!([
            param("dryRun"),
            param("fieldManager"),
            param("fieldValidation"),
            param("force")
        ]);
        let op = |verb: &str| json!({ "operationId": format!("{verb}{}", k.kind), "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": { "200": { "description": "OK" } } });
        paths.insert(format!("{prefix}{scope}/{}/{{name}}", k.plural), json!({ "get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete") }));
        paths.insert(
            format!("{prefix}{scope}/{}", k.plural),
            json!({ "get": op("list"), "post": op("post") }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({ "openapi": "3.0.0", "info": { "title": "Kubernetes", "version": "v1.32.0-kube-emulator" }, "paths": paths, "components": { "schemas": {} } }),
    )
}

fn group(g: &str, v: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
    json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource (get {path})"),
    )
}
