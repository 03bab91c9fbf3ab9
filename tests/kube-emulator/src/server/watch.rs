//! Watches: a chunked stream of `{"type", "object"}` lines, resumable from a
//! resourceVersion (410 Gone when it is older than the history), with selector
//! transitions (an object that stops matching is seen as DELETED), the streaming-list
//! initial events with their `k8s.io/initial-events-end` bookmark, and
//! `timeoutSeconds`. Watches end when the server stops.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::{Body, Shared};
use crate::kinds::Kind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::Change;

/// Watches without `timeoutSeconds` end after this long (the API server picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    kind: Arc<Kind>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event a watcher sees for a change, if any.
    fn event(&self, change: &Change) -> Option<Value> {
        if change.resource != self.kind.key()
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.matches(p));
        let event_type = match (change.event_type, before, now) {
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            ("ADDED" | "DELETED", _, true) => change.event_type,
            _ => return None,
        };
        Some(json!({ "type": event_type, "object": change.object }))
    }
}

pub(crate) fn start(
    shared: &Shared,
    query: &Query,
    cancel: &CancellationToken,
    kind: Arc<Kind>,
    namespace: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter {
        kind,
        namespace,
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))?,
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let requested = query.get("resourceVersion").unwrap_or("");
    let initial_events = query.flag("sendInitialEvents");

    let state = shared.lock();
    if let Some(ns) = &filter.namespace {
        state.check_namespace(&filter.kind, ns)?;
    }
    let receiver = state.store.subscribe();
    let current_rv = state.store.resource_version();
    let mut initial: Vec<Value> = Vec::new();
    let mut last_rv = current_rv;
    let snapshot = |initial: &mut Vec<Value>| {
        for s in state.store.list(&filter.kind, filter.namespace.as_deref()) {
            if filter.matches(&s.object) {
                initial.push(json!({ "type": "ADDED", "object": s.object }));
            }
        }
    };
    if initial_events || requested.is_empty() || requested == "0" {
        snapshot(&mut initial);
        if initial_events {
            initial.push(json!({
                "type": "BOOKMARK",
                "object": {
                    "kind": filter.kind.kind,
                    "apiVersion": filter.kind.api_version(),
                    "metadata": { "resourceVersion": current_rv.to_string(), "annotations": { "k8s.io/initial-events-end": "true" } },
                },
            }));
        }
    } else {
        let rv: u64 = requested
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {requested:?}")))?;
        match state.store.changes_since(rv) {
            Some(changes) => initial.extend(changes.iter().filter_map(|c| filter.event(c))),
            None => {
                initial.push(json!({ "type": "ERROR", "object": expired(rv, current_rv) }));
                last_rv = u64::MAX;
            }
        }
    }
    drop(state);

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let mut receiver = receiver;
        for event in initial {
            if tx.send(line(&event)).await.is_err() {
                return;
            }
        }
        if last_rv == u64::MAX {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let change = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                change = receiver.recv() => change,
            };
            match change {
                Ok(change) if change.rv > last_rv => {
                    if let Some(event) = filter.event(&change) {
                        if tx.send(line(&event)).await.is_err() {
                            return;
                        }
                    }
                    last_rv = change.rv;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let _ = tx
                        .send(line(
                            &json!({ "type": "ERROR", "object": expired(last_rv, last_rv) }),
                        ))
                        .await;
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(bytes)), rx))
    });
    let body = BodyExt::boxed(StreamBody::new(frames));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn expired(requested: u64, current: u64) -> Value {
    ApiError::gone(format!("too old resource version: {requested} ({current})")).to_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(event_type: &'static str, tier: &str, previous_tier: Option<&str>) -> Change {
        let obj = |t: &str| json!({ "metadata": { "name": "a", "labels": { "tier": t } } });
        Change {
            resource: "/configmaps".into(),
            namespace: "default".into(),
            rv: 10,
            event_type,
            object: obj(tier),
            previous: previous_tier.map(obj),
        }
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let kinds = crate::kinds::Kinds::shared().expect("kinds");
        let filter = Filter {
            kind: kinds.by_name("configmaps").expect("configmaps"),
            namespace: Some("default".into()),
            labels: LabelSelector::parse("tier=gpu").expect("selector"),
            fields: FieldSelector::default(),
        };
        let kind_of = |c: Change| {
            filter
                .event(&c)
                .map(|e| e["type"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(
            kind_of(change("MODIFIED", "gpu", Some("cpu"))).as_deref(),
            Some("ADDED")
        );
        assert_eq!(
            kind_of(change("MODIFIED", "cpu", Some("gpu"))).as_deref(),
            Some("DELETED")
        );
        assert_eq!(
            kind_of(change("MODIFIED", "gpu", Some("gpu"))).as_deref(),
            Some("MODIFIED")
        );
        assert_eq!(kind_of(change("MODIFIED", "cpu", Some("cpu"))), None);
        assert_eq!(kind_of(change("ADDED", "cpu", None)), None);
        let mut elsewhere = change("ADDED", "gpu", None);
        elsewhere.namespace = "other".into();
        assert_eq!(kind_of(elsewhere), None);
    }
}
