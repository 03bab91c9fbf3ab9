//! Request paths: `/api/v1/namespaces/{ns}/{plural}/{name}/{subresource}` and
//! `/apis/{group}/{version}/...`, plus the request's Kubernetes verb.

use http::Method;

use super::query::Query;

#[derive(Debug)]
pub(crate) enum Route {
    Resource(ResourceRoute),
    /// Discovery, version, health, OpenAPI.
    NonResource,
}

#[derive(Debug)]
pub(crate) struct ResourceRoute {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: String,
    pub verb: &'static str,
}

impl Route {
    pub fn parse(method: &Method, path: &str, query: &Query) -> Route {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return Route::NonResource,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
            {
                (Some(ns.to_string()), [&[*plural][..], tail].concat())
            }
            _ => (None, rest.to_vec()),
        };
        let (plural, name, subresource) = match rest.as_slice() {
            [plural] => (*plural, None, ""),
            [plural, name] => (*plural, Some(name.to_string()), ""),
            [plural, name, sub] => (*plural, Some(name.to_string()), *sub),
            _ => return Route::NonResource,
        };
        let verb = match (method.as_str(), name.is_some()) {
            ("GET", _) if query.flag("watch") => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        };
        Route::Resource(ResourceRoute {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace,
            name,
            subresource: subresource.to_string(),
            verb,
        })
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Route::Resource(r) => r.verb,
            Route::NonResource => "get",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str, query: &str) -> ResourceRoute {
        match Route::parse(&method, path, &Query::parse(query)) {
            Route::Resource(r) => r,
            Route::NonResource => panic!("{path} should be a resource path"),
        }
    }

    #[test]
    fn parses_core_group_and_namespace_paths() {
        let r = parse(
            Method::PATCH,
            "/apis/serving.knative.dev/v1/namespaces/ml/services/m/status",
            "",
        );
        assert_eq!(
            (
                r.group.as_str(),
                r.plural.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource.as_str(),
                r.verb
            ),
            (
                "serving.knative.dev",
                "services",
                Some("ml"),
                Some("m"),
                "status",
                "patch"
            )
        );
        let r = parse(Method::GET, "/api/v1/namespaces/ml", "");
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref(), r.namespace, r.verb),
            ("namespaces", Some("ml"), None, "get")
        );
        let r = parse(Method::GET, "/api/v1/secrets", "watch=true");
        assert_eq!((r.plural.as_str(), r.verb), ("secrets", "watch"));
        assert!(matches!(
            Route::parse(
                &Method::GET,
                "/apis/serving.knative.dev/v1",
                &Query::default()
            ),
            Route::NonResource
        ));
    }
}
