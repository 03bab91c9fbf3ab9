//! The rollback write: computed afresh from every read, so a 409 re-read that finds
//! the work done (by another replica) yields nothing to write.

use std::time::SystemTime;

use super::{
    knative::{self, Role, TrafficError},
    kserve, records,
    view::{Action, Subject, View, Write},
};

/// The write rolling `revision` back, or `None` when it is not (or no longer) a
/// canary.
pub fn plan(
    view: &View,
    revision: &str,
    reason: &str,
    verdict: &str,
    now: SystemTime,
) -> Result<Option<Write>, TrafficError> {
    let Role::Canary { stable, .. } = view.role(revision)? else {
        return Ok(None);
    };
    let annotations =
        records::rollback_annotations(&view.annotations(), revision, reason, verdict, now);
    let (subject, _) = view.subject();
    let spec = match subject {
        Subject::KnativeService => {
            let traffic = knative::resolve(&view.service)?;
            serde_json::json!({ "traffic": knative::rollback(&traffic, revision, &stable) })
        }
        Subject::InferenceService => kserve::canary_spec(Some(0)),
    };
    Ok(Some(Write {
        subject,
        name: view.subject_name(),
        patch: view.patch(annotations, Some(spec)),
        action: Action::Rollback {
            revision: revision.to_string(),
            stable,
            reason: reason.to_string(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn knative_view() -> View {
        View {
            service: json!({
                "metadata": { "name": "m", "resourceVersion": "41" },
                "spec": { "traffic": [
                    { "revisionName": "m-00001", "percent": 75, "tag": "previous" },
                    { "latestRevision": true, "percent": 25 },
                ]},
                "status": { "latestReadyRevisionName": "m-00002" },
            }),
            isvc: None,
        }
    }

    #[test]
    fn knative_rollback_is_conditional_and_annotated() {
        let now = SystemTime::UNIX_EPOCH;
        let w = plan(
            &knative_view(),
            "m-00002",
            "error_ratio 1 > 0.05",
            "{}",
            now,
        )
        .expect("resolves")
        .expect("canary");
        assert_eq!(w.subject, Subject::KnativeService);
        assert_eq!(w.patch["metadata"]["resourceVersion"], "41");
        let a = &w.patch["metadata"]["annotations"];
        assert_eq!(a[records::ROLLED_BACK_REVISION], "m-00002");
        assert_eq!(a[records::QUARANTINED], "m-00002");
        assert_eq!(a[records::ROLLBACK_REASON], "error_ratio 1 > 0.05");
        assert_eq!(w.patch["spec"]["traffic"][0]["percent"], 100);
        assert_eq!(w.patch["spec"]["traffic"][1]["tag"], "canary");
    }

    #[test]
    fn nothing_to_do_for_the_stable_revision_or_after_the_rollback() {
        let now = SystemTime::UNIX_EPOCH;
        assert!(plan(&knative_view(), "m-00001", "x", "{}", now)
            .expect("resolves")
            .is_none());
        let mut done = knative_view();
        done.service["spec"]["traffic"] = json!([
            { "revisionName": "m-00001", "percent": 100, "tag": "previous" },
            { "revisionName": "m-00002", "percent": 0, "tag": "canary" },
        ]);
        assert!(plan(&done, "m-00002", "x", "{}", now)
            .expect("resolves")
            .is_none());
    }

    #[test]
    fn kserve_rollback_patches_the_inference_service() {
        let mut view = knative_view();
        view.isvc = Some(json!({
            "metadata": { "name": "iris", "resourceVersion": "7" },
            "spec": { "predictor": { "canaryTrafficPercent": 25 } },
            "status": { "components": { "predictor": { "latestRolledoutRevision": "m-00001" } } },
        }));
        let w = plan(&view, "m-00002", "x", "{}", SystemTime::UNIX_EPOCH)
            .expect("resolves")
            .expect("canary");
        assert_eq!(w.subject, Subject::InferenceService);
        assert_eq!(w.name, "iris");
        assert_eq!(w.patch["metadata"]["resourceVersion"], "7");
        assert_eq!(w.patch["spec"]["predictor"]["canaryTrafficPercent"], 0);
        assert_eq!(w.patch["spec"].get("traffic"), None::<&Value>);
    }
}
