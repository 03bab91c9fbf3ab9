//! Knative Service traffic: who is the canary, and the `spec.traffic` a rollback or a
//! promotion writes. Pure functions over the Service JSON.
//!
//! Every written entry is pinned by `revisionName`: a `latestRevision: true` entry
//! would follow the next revision Knative creates (or route back to a bad one).

use serde_json::{json, Value};

/// Tag of the revision a rollback returns to (`@previous`).
pub const PREVIOUS_TAG: &str = "previous";
/// Tag that keeps a rolled-back canary reachable at 0% for debugging.
pub const CANARY_TAG: &str = "canary";

/// One traffic entry with its revision resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub revision: String,
    pub percent: i64,
    pub tag: Option<String>,
    /// The entry followed the latest ready revision.
    pub latest: bool,
}

/// What a revision is to its Service right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Carries all traffic, or is the revision canaries fall back to: never acts.
    Stable,
    /// Carries no traffic (rolled back, or not rolled out yet).
    Idle,
    /// Carries `percent` (< 100) beside `stable`, the rollback target.
    Canary { percent: i64, stable: String },
}

/// Why traffic could not be read or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    #[error("spec.traffic[{0}] follows the latest revision but status.latestReadyRevisionName is not set yet")]
    Unresolved(usize),
    #[error("spec.traffic[{0}] names no revision")]
    Unnamed(usize),
}

/// `spec.traffic` with every entry resolved to a revision name.
pub fn resolve(service: &Value) -> Result<Vec<Target>, TrafficError> {
    let latest_ready = service
        .pointer("/status/latestReadyRevisionName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let entries = service
        .pointer("/spec/traffic")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        // Knative defaults an empty traffic list to 100% latest.
        return Ok(latest_ready
            .map(|r| {
                vec![Target {
                    revision: r.to_string(),
                    percent: 100,
                    tag: None,
                    latest: true,
                }]
            })
            .unwrap_or_default());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let named = e
                .get("revisionName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let latest =
                e.get("latestRevision").and_then(Value::as_bool) == Some(true) || named.is_none();
            let revision = match (named, latest) {
                (Some(r), _) => r.to_string(),
                (None, true) => latest_ready.ok_or(TrafficError::Unresolved(i))?.to_string(),
                (None, false) => return Err(TrafficError::Unnamed(i)),
            };
            Ok(Target {
                revision,
                percent: e.get("percent").and_then(Value::as_i64).unwrap_or(0),
                tag: e
                    .get("tag")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                latest,
            })
        })
        .collect()
}

/// The share of `revision`.
pub fn percent_of(traffic: &[Target], revision: &str) -> i64 {
    traffic
        .iter()
        .filter(|t| t.revision == revision)
        .map(|t| t.percent)
        .sum()
}

fn tagged<'a>(traffic: &'a [Target], revision: &str, tag: &str) -> Option<&'a Target> {
    traffic
        .iter()
        .find(|t| t.revision == revision && t.tag.as_deref() == Some(tag))
}

/// The role of `me`. A revision is the canary when it carries less than 100% beside
/// another revision and is not itself the fallback: another revision is tagged
/// `previous`, or `me` is the latest (ready) revision.
pub fn role(traffic: &[Target], me: &str, latest_ready: Option<&str>) -> Role {
    let mine = percent_of(traffic, me);
    if mine <= 0 {
        return Role::Idle;
    }
    if mine >= 100 || tagged(traffic, me, PREVIOUS_TAG).is_some() {
        return Role::Stable;
    }
    let previous = traffic
        .iter()
        .find(|t| t.revision != me && t.tag.as_deref() == Some(PREVIOUS_TAG));
    let is_latest =
        latest_ready == Some(me) || traffic.iter().any(|t| t.revision == me && t.latest);
    let stable = match previous {
        Some(p) => p.revision.clone(),
        None if is_latest => {
            // The other revision carrying the most traffic.
            let mut others: Vec<&Target> = traffic
                .iter()
                .filter(|t| t.revision != me && t.percent > 0)
                .collect();
            others.sort_by_key(|t| std::cmp::Reverse(percent_of(traffic, &t.revision)));
            match others.first() {
                Some(t) => t.revision.clone(),
                None => return Role::Stable,
            }
        }
        None => return Role::Stable,
    };
    Role::Canary {
        percent: mine,
        stable,
    }
}

/// `spec.traffic` after rolling `canary` back: `stable` 100%, the canary 0% tagged
/// `canary`, other tagged entries kept at 0%, untagged leftovers dropped.
pub fn rollback(traffic: &[Target], canary: &str, stable: &str) -> Vec<Value> {
    let mut out = rebalance(traffic, canary, 0, stable);
    ensure_tag(&mut out, canary, CANARY_TAG);
    finish(out)
}

/// `spec.traffic` with `canary` at `percent` and `stable` at the rest; at 100 the
/// canary drops its `canary` tag and `stable` stays at 0% tagged `previous`.
pub fn promote(traffic: &[Target], canary: &str, stable: &str, percent: i64) -> Vec<Value> {
    let mut out = rebalance(traffic, canary, percent, stable);
    if percent >= 100 {
        for t in out.iter_mut().filter(|t| t.revision == canary) {
            if t.tag.as_deref() == Some(CANARY_TAG) {
                t.tag = None;
            }
        }
        ensure_tag(&mut out, stable, PREVIOUS_TAG);
    }
    finish(out)
}

/// Pinned entries with `canary` at `percent`, `stable` at `100 - percent`, the rest 0.
fn rebalance(traffic: &[Target], canary: &str, percent: i64, stable: &str) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for t in traffic {
        if out
            .iter()
            .any(|o| o.revision == t.revision && o.tag == t.tag)
        {
            continue;
        }
        out.push(Target {
            percent: 0,
            latest: false,
            ..t.clone()
        });
    }
    for (revision, share) in [(canary, percent), (stable, 100 - percent)] {
        match out.iter_mut().find(|t| t.revision == revision) {
            Some(t) => t.percent = share,
            None => out.push(Target {
                revision: revision.to_string(),
                percent: share,
                tag: None,
                latest: false,
            }),
        }
    }
    out
}

/// Puts `tag` on an entry of `revision` (taking it from any other revision).
fn ensure_tag(out: &mut Vec<Target>, revision: &str, tag: &str) {
    for t in out.iter_mut() {
        if t.revision != revision && t.tag.as_deref() == Some(tag) {
            t.tag = None;
        }
    }
    if out
        .iter()
        .any(|t| t.revision == revision && t.tag.as_deref() == Some(tag))
    {
        return;
    }
    match out
        .iter_mut()
        .find(|t| t.revision == revision && t.tag.is_none())
    {
        Some(t) => t.tag = Some(tag.to_string()),
        None => out.push(Target {
            revision: revision.to_string(),
            percent: 0,
            tag: Some(tag.to_string()),
            latest: false,
        }),
    }
}

/// Drops untagged 0% entries and renders the JSON list.
fn finish(out: Vec<Target>) -> Vec<Value> {
    out.into_iter()
        .filter(|t| t.percent > 0 || t.tag.is_some())
        .map(|t| {
            let mut v = json!({
                "revisionName": t.revision,
                "latestRevision": false,
                "percent": t.percent,
            });
            if let Some(tag) = t.tag {
                v["tag"] = json!(tag);
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests;
