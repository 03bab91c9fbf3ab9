//! The staged-promotion write of a healthy canary: record the start of its step, or
//! move it to the next step once the step has lasted its duration.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::{
    knative::{self, Role},
    kserve, records,
    records::{StepDecision, Steps},
    view::{Action, Subject, View, Write},
};

/// What promotion wants now.
#[derive(Debug)]
pub enum Plan {
    /// Not a canary, not opted in, or quarantined.
    Nothing,
    /// The step runs for this much longer.
    Wait(Duration),
    Write(Write),
}

/// The promotion plan for a healthy `revision`. `steps` is the Service's plan.
pub fn plan(
    view: &View,
    revision: &str,
    steps: &Steps,
    verdict: &str,
    now: SystemTime,
) -> Result<Plan, knative::TrafficError> {
    let Role::Canary { percent, stable } = view.role(revision)? else {
        return Ok(Plan::Nothing);
    };
    let annotations = view.annotations();
    if records::is_quarantined(&annotations, revision) {
        return Ok(Plan::Nothing);
    }
    let (subject, _) = view.subject();
    let mut a = Map::new();
    match records::step_decision(steps, &annotations, revision, percent, now) {
        StepDecision::Wait(d) => Ok(Plan::Wait(d)),
        StepDecision::Record => {
            a.insert(
                records::STEP_STARTED.into(),
                json!(records::step_started(revision, percent, now)),
            );
            Ok(Plan::Write(Write {
                subject,
                name: view.subject_name(),
                patch: view.patch(a, None),
                action: Action::RecordStep {
                    revision: revision.to_string(),
                    percent,
                },
            }))
        }
        StepDecision::Promote(to) => {
            let spec = match subject {
                Subject::KnativeService => {
                    let traffic = knative::resolve(&view.service)?;
                    json!({ "traffic": knative::promote(&traffic, revision, &stable, to) })
                }
                Subject::InferenceService => kserve::canary_spec((to < 100).then_some(to)),
            };
            let started = if to < 100 {
                json!(records::step_started(revision, to, now))
            } else {
                a.insert(records::PROMOTED_REVISION.into(), json!(revision));
                a.insert(records::PROMOTION_TIME.into(), json!(records::rfc3339(now)));
                Value::Null
            };
            a.insert(records::STEP_STARTED.into(), started);
            a.insert(records::VERDICT.into(), json!(verdict));
            Ok(Plan::Write(Write {
                subject,
                name: view.subject_name(),
                patch: view.patch(a, Some(spec)),
                action: Action::Promote {
                    revision: revision.to_string(),
                    from: percent,
                    to,
                },
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(percent: i64, started: Option<String>) -> View {
        let mut service = json!({
            "metadata": { "name": "m", "resourceVersion": "9", "annotations": {
                records::STEPS: "5,25,50,100", records::STEP_DURATION: "10s",
            }},
            "spec": { "traffic": [
                { "revisionName": "a", "percent": 100 - percent, "tag": "previous" },
                { "revisionName": "b", "percent": percent },
            ]},
            "status": { "latestReadyRevisionName": "b" },
        });
        if let Some(s) = started {
            service["metadata"]["annotations"][records::STEP_STARTED] = json!(s);
        }
        View {
            service,
            isvc: None,
        }
    }

    fn steps(v: &View) -> Steps {
        Steps::from_annotations(&v.annotations(), Duration::from_secs(600))
            .expect("valid")
            .expect("opted in")
    }

    #[test]
    fn records_then_waits_then_promotes_with_a_new_record() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = view(5, None);
        let Plan::Write(w) = plan(&v, "b", &steps(&v), "{}", t0).expect("plan") else {
            panic!("expected the step record");
        };
        assert_eq!(w.patch.get("spec"), None);
        let record = w.patch["metadata"]["annotations"][records::STEP_STARTED]
            .as_str()
            .expect("record")
            .to_string();
        let v = view(5, Some(record));
        assert!(matches!(
            plan(&v, "b", &steps(&v), "{}", t0 + Duration::from_secs(3)),
            Ok(Plan::Wait(d)) if d == Duration::from_secs(7)
        ));
        let Ok(Plan::Write(w)) = plan(&v, "b", &steps(&v), "{}", t0 + Duration::from_secs(10))
        else {
            panic!("expected a promotion");
        };
        assert_eq!(
            w.action,
            Action::Promote {
                revision: "b".into(),
                from: 5,
                to: 25
            }
        );
        assert_eq!(w.patch["spec"]["traffic"][1]["percent"], 25);
        assert!(w.patch["metadata"]["annotations"][records::STEP_STARTED]
            .as_str()
            .is_some_and(|s| s.starts_with("b/25/")));
    }

    #[test]
    fn full_promotion_clears_the_step_and_records_the_promotion() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = view(50, Some(records::step_started("b", 50, t0)));
        let Ok(Plan::Write(w)) = plan(&v, "b", &steps(&v), "{}", t0 + Duration::from_secs(11))
        else {
            panic!("expected a promotion");
        };
        let a = &w.patch["metadata"]["annotations"];
        assert_eq!(a[records::STEP_STARTED], Value::Null);
        assert_eq!(a[records::PROMOTED_REVISION], "b");
        assert_eq!(
            w.patch["spec"]["traffic"],
            json!([
                { "revisionName": "a", "latestRevision": false, "percent": 0, "tag": "previous" },
                { "revisionName": "b", "latestRevision": false, "percent": 100 },
            ])
        );
    }

    #[test]
    fn quarantined_and_stable_revisions_are_never_promoted() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut v = view(25, None);
        v.service["metadata"]["annotations"][records::QUARANTINED] = json!("b");
        assert!(matches!(
            plan(&v, "b", &steps(&v), "{}", t0),
            Ok(Plan::Nothing)
        ));
        let v = view(25, None);
        assert!(matches!(
            plan(&v, "a", &steps(&v), "{}", t0),
            Ok(Plan::Nothing)
        ));
    }
}
