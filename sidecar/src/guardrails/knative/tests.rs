use serde_json::{json, Value};

use super::*;

fn service(traffic: Value, latest_ready: &str) -> Value {
    json!({
        "spec": { "traffic": traffic },
        "status": { "latestReadyRevisionName": latest_ready },
    })
}

/// The classic Knative canary: the old revision pinned and tagged, 25% to latest.
fn canary_at_25() -> Vec<Target> {
    resolve(&service(
        json!([
            { "revisionName": "m-00001", "percent": 75, "tag": "previous" },
            { "latestRevision": true, "percent": 25 },
        ]),
        "m-00002",
    ))
    .expect("resolves")
}

#[test]
fn latest_entries_resolve_to_the_latest_ready_revision() {
    let t = canary_at_25();
    assert_eq!(t[1].revision, "m-00002");
    assert!(t[1].latest);
    let unresolved = resolve(&service(
        json!([{ "latestRevision": true, "percent": 100 }]),
        "",
    ));
    assert_eq!(unresolved, Err(TrafficError::Unresolved(0)));
}

#[test]
fn roles_of_canary_stable_and_idle() {
    let t = canary_at_25();
    assert_eq!(
        role(&t, "m-00002", Some("m-00002")),
        Role::Canary {
            percent: 25,
            stable: "m-00001".into()
        }
    );
    assert_eq!(role(&t, "m-00001", Some("m-00002")), Role::Stable);
    assert_eq!(role(&t, "m-00003", Some("m-00002")), Role::Idle);
}

#[test]
fn without_a_previous_tag_the_older_revision_is_stable_even_at_50_50() {
    let t = resolve(&service(
        json!([
            { "revisionName": "a", "percent": 50 },
            { "revisionName": "b", "percent": 50 },
        ]),
        "b",
    ))
    .expect("resolves");
    assert_eq!(role(&t, "a", Some("b")), Role::Stable);
    assert_eq!(
        role(&t, "b", Some("b")),
        Role::Canary {
            percent: 50,
            stable: "a".into()
        }
    );
}

#[test]
fn rollback_pins_everything_and_tags_the_canary() {
    let out = rollback(&canary_at_25(), "m-00002", "m-00001");
    assert_eq!(
        Value::Array(out),
        json!([
            { "revisionName": "m-00001", "latestRevision": false, "percent": 100, "tag": "previous" },
            { "revisionName": "m-00002", "latestRevision": false, "percent": 0, "tag": "canary" },
        ])
    );
}

#[test]
fn rollback_keeps_debug_tags_drops_untagged_leftovers_and_moves_a_stale_canary_tag() {
    let t = resolve(&service(
        json!([
            { "revisionName": "a", "percent": 60 },
            { "revisionName": "old", "percent": 0, "tag": "canary" },
            { "revisionName": "old2", "percent": 10 },
            { "revisionName": "b", "percent": 30, "tag": "green" },
        ]),
        "b",
    ))
    .expect("resolves");
    let Role::Canary { stable, .. } = role(&t, "b", Some("b")) else {
        panic!("b is the canary");
    };
    assert_eq!(stable, "a");
    let out = Value::Array(rollback(&t, "b", &stable));
    assert_eq!(
        out,
        json!([
            { "revisionName": "a", "latestRevision": false, "percent": 100 },
            { "revisionName": "b", "latestRevision": false, "percent": 0, "tag": "green" },
            { "revisionName": "b", "latestRevision": false, "percent": 0, "tag": "canary" },
        ])
    );
}

#[test]
fn promotion_steps_then_full_rollout_tags_previous() {
    let t = canary_at_25();
    assert_eq!(
        Value::Array(promote(&t, "m-00002", "m-00001", 50)),
        json!([
            { "revisionName": "m-00001", "latestRevision": false, "percent": 50, "tag": "previous" },
            { "revisionName": "m-00002", "latestRevision": false, "percent": 50 },
        ])
    );
    let tagged_canary = resolve(&service(
        json!([
            { "revisionName": "a", "percent": 50 },
            { "revisionName": "b", "percent": 50, "tag": "canary" },
        ]),
        "b",
    ))
    .expect("resolves");
    assert_eq!(
        Value::Array(promote(&tagged_canary, "b", "a", 100)),
        json!([
            { "revisionName": "a", "latestRevision": false, "percent": 0, "tag": "previous" },
            { "revisionName": "b", "latestRevision": false, "percent": 100 },
        ])
    );
}

#[test]
fn written_traffic_always_sums_to_100() {
    let t = canary_at_25();
    for p in [0, 5, 25, 50, 99, 100] {
        let out = promote(&t, "m-00002", "m-00001", p);
        let sum: i64 = out.iter().filter_map(|e| e["percent"].as_i64()).sum();
        assert_eq!(sum, 100, "at {p}%: {out:?}");
    }
}
