//! What Guardrail records on the Service (or InferenceService) it acts on, so the
//! story survives canary pods scaling to zero and `kubectl describe` tells it:
//! the rollback, the quarantine list, and the start of the current promotion step.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde_json::{json, Map, Value};

use super::{
    config::DeadlineAction,
    thresholds::{parse_duration, AnnotationError},
};

pub const ROLLED_BACK_REVISION: &str = "guardrail.dev/rolled-back-revision";
pub const ROLLBACK_REASON: &str = "guardrail.dev/rollback-reason";
pub const ROLLBACK_TIME: &str = "guardrail.dev/rollback-time";
/// Comma-separated revisions that were rolled back and are never promoted again.
pub const QUARANTINED: &str = "guardrail.dev/quarantined-revisions";
pub const STEPS: &str = "guardrail.dev/steps";
pub const STEP_DURATION: &str = "guardrail.dev/step-duration";
/// `<revision>/<percent>/<RFC 3339 time>`: when the current step began.
pub const STEP_STARTED: &str = "guardrail.dev/step-started";
pub const PROMOTED_REVISION: &str = "guardrail.dev/promoted-revision";
/// The verdict (findings with their numbers, JSON) behind the last rollback or promotion.
pub const VERDICT: &str = "guardrail.dev/verdict";
/// How long a step may stay undecided, and what happens then.
pub const DECISION_DEADLINE: &str = "guardrail.dev/decision-deadline";
pub const DEADLINE_ACTION: &str = "guardrail.dev/deadline-action";
pub const PROMOTION_TIME: &str = "guardrail.dev/promotion-time";

/// `metadata.annotations` as a map (non-string values ignored).
pub fn annotations(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn quarantined(annotations: &BTreeMap<String, String>) -> Vec<String> {
    annotations
        .get(QUARANTINED)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_quarantined(annotations: &BTreeMap<String, String>, revision: &str) -> bool {
    quarantined(annotations).iter().any(|r| r == revision)
}

/// The annotations a rollback of `revision` writes.
pub fn rollback_annotations(
    current: &BTreeMap<String, String>,
    revision: &str,
    reason: &str,
    verdict: &str,
    now: SystemTime,
) -> Map<String, Value> {
    let mut q = quarantined(current);
    if !q.iter().any(|r| r == revision) {
        q.push(revision.to_string());
    }
    let mut m = Map::new();
    m.insert(ROLLED_BACK_REVISION.into(), json!(revision));
    m.insert(ROLLBACK_REASON.into(), json!(reason));
    m.insert(ROLLBACK_TIME.into(), json!(rfc3339(now)));
    m.insert(VERDICT.into(), json!(verdict));
    m.insert(QUARANTINED.into(), json!(q.join(",")));
    // A rolled-back canary's step is over.
    m.insert(STEP_STARTED.into(), Value::Null);
    m
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A Service's staged-promotion plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// Strictly increasing percentages ending at 100.
    pub percents: Vec<i64>,
    pub duration: Duration,
}

impl Steps {
    /// The plan from `guardrail.dev/steps` and `guardrail.dev/step-duration`; `None`
    /// when the Service did not opt in.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        default_duration: Duration,
    ) -> Result<Option<Steps>, AnnotationError> {
        let Some(raw) = annotations.get(STEPS) else {
            return Ok(None);
        };
        let bad = |annotation, value: &str, message: &str| AnnotationError {
            annotation,
            value: value.to_string(),
            message: message.to_string(),
        };
        let mut percents = Vec::new();
        for part in raw.split(',') {
            let p: i64 = part
                .trim()
                .parse()
                .map_err(|_| bad(STEPS, raw, "expected percentages, e.g. \"5,25,50,100\""))?;
            if !(1..=100).contains(&p) || percents.last().is_some_and(|last| *last >= p) {
                return Err(bad(
                    STEPS,
                    raw,
                    "steps must be strictly increasing percentages in 1..=100",
                ));
            }
            percents.push(p);
        }
        if percents.last() != Some(&100) {
            return Err(bad(STEPS, raw, "the last step must be 100"));
        }
        let duration = match annotations.get(STEP_DURATION) {
            Some(v) => parse_duration(v.trim()).map_err(|m| bad(STEP_DURATION, v, &m))?,
            None => default_duration,
        };
        Ok(Some(Steps { percents, duration }))
    }

    /// The first step above `percent`.
    pub fn next(&self, percent: i64) -> Option<i64> {
        self.percents.iter().copied().find(|p| *p > percent)
    }
}

/// The start of `revision`'s step at `percent` as recorded in `step-started`, if the
/// record is this step's.
pub fn step_started_at(
    annotations: &BTreeMap<String, String>,
    revision: &str,
    percent: i64,
) -> Option<SystemTime> {
    let v = annotations.get(STEP_STARTED)?;
    let mut parts = v.splitn(3, '/');
    let (r, p, t) = (parts.next()?, parts.next()?, parts.next()?);
    (r == revision && p.parse::<i64>().ok()? == percent)
        .then(|| humantime::parse_rfc3339(t).ok())
        .flatten()
}

/// The decision deadline and its action: the Service's annotations over the config
/// defaults (a value that does not parse keeps the default).
pub fn deadline(
    annotations: &BTreeMap<String, String>,
    default_deadline: Duration,
    default_action: DeadlineAction,
) -> (Duration, DeadlineAction) {
    let deadline = annotations
        .get(DECISION_DEADLINE)
        .and_then(|v| parse_duration(v.trim()).ok())
        .unwrap_or(default_deadline);
    let action = annotations
        .get(DEADLINE_ACTION)
        .and_then(|v| DeadlineAction::parse(v).ok())
        .unwrap_or(default_action);
    (deadline, action)
}

/// What a healthy canary does about promotion now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDecision {
    /// The current step has no (valid) start record: write one.
    Record,
    /// The step still runs for this long.
    Wait(Duration),
    /// Move to this percentage.
    Promote(i64),
}

/// Decides promotion of `revision`, currently at `percent`, at `now`.
pub fn step_decision(
    steps: &Steps,
    annotations: &BTreeMap<String, String>,
    revision: &str,
    percent: i64,
    now: SystemTime,
) -> StepDecision {
    let Some(started) = step_started_at(annotations, revision, percent) else {
        return StepDecision::Record;
    };
    let elapsed = now.duration_since(started).unwrap_or_default();
    match steps.next(percent) {
        Some(next) if elapsed >= steps.duration => StepDecision::Promote(next),
        Some(_) => StepDecision::Wait(steps.duration - elapsed),
        // Above the last step means 100%: the revision is stable, nothing to do.
        None => StepDecision::Wait(steps.duration),
    }
}

/// The `guardrail.dev/step-started` value for a step starting now.
pub fn step_started(revision: &str, percent: i64, now: SystemTime) -> String {
    format!("{revision}/{percent}/{}", rfc3339(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn steps_parse_and_reject_bad_plans() {
        let s = Steps::from_annotations(
            &map(&[(STEPS, "5, 25,50,100"), (STEP_DURATION, "2s")]),
            Duration::from_secs(600),
        )
        .expect("valid")
        .expect("opted in");
        assert_eq!(s.percents, [5, 25, 50, 100]);
        assert_eq!(s.duration, Duration::from_secs(2));
        assert_eq!(
            (s.next(5), s.next(30), s.next(100)),
            (Some(25), Some(50), None)
        );
        for bad in ["5,25,50", "25,5,100", "0,100", "five,100"] {
            let e = Steps::from_annotations(&map(&[(STEPS, bad)]), Duration::from_secs(1))
                .expect_err(bad);
            assert_eq!(e.annotation, STEPS);
        }
        assert_eq!(
            Steps::from_annotations(&map(&[]), Duration::from_secs(1)),
            Ok(None)
        );
    }

    #[test]
    fn a_step_is_recorded_then_waited_then_promoted() {
        let steps = Steps {
            percents: vec![5, 25, 50, 100],
            duration: Duration::from_secs(10),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            step_decision(&steps, &map(&[]), "m-2", 5, t0),
            StepDecision::Record
        );
        let recorded = map(&[(STEP_STARTED, &step_started("m-2", 5, t0))]);
        assert_eq!(
            step_decision(&steps, &recorded, "m-2", 5, t0 + Duration::from_secs(4)),
            StepDecision::Wait(Duration::from_secs(6))
        );
        assert_eq!(
            step_decision(&steps, &recorded, "m-2", 5, t0 + Duration::from_secs(10)),
            StepDecision::Promote(25)
        );
        // A record of another step (or revision) does not count.
        assert_eq!(
            step_decision(&steps, &recorded, "m-2", 25, t0 + Duration::from_secs(60)),
            StepDecision::Record
        );
        assert_eq!(
            step_decision(&steps, &recorded, "m-3", 5, t0 + Duration::from_secs(60)),
            StepDecision::Record
        );
    }

    #[test]
    fn clock_skew_between_the_recording_and_the_promoting_pod_shifts_the_step_by_the_skew() {
        let steps = Steps {
            percents: vec![5, 25, 100],
            duration: Duration::from_secs(600),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let skew = Duration::from_secs(180);
        // Recorded by a judge whose clock ran 3 minutes ahead: a start "in the future"
        // waits (never promotes early, never fails) until this clock passes it.
        let ahead = map(&[(STEP_STARTED, &step_started("m-2", 5, now + skew))]);
        assert_eq!(
            step_decision(&steps, &ahead, "m-2", 5, now),
            StepDecision::Wait(steps.duration)
        );
        assert_eq!(
            step_decision(&steps, &ahead, "m-2", 5, now + skew + steps.duration),
            StepDecision::Promote(25)
        );
        // Recorded by a judge 3 minutes behind: the step ends 3 minutes early on this
        // clock, and never earlier than the skew allows.
        let behind = map(&[(STEP_STARTED, &step_started("m-2", 5, now - skew))]);
        assert_eq!(
            step_decision(
                &steps,
                &behind,
                "m-2",
                5,
                now + steps.duration - skew - Duration::from_secs(1)
            ),
            StepDecision::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            step_decision(&steps, &behind, "m-2", 5, now + steps.duration - skew),
            StepDecision::Promote(25)
        );
    }

    #[test]
    fn rollback_records_quarantine_once() {
        let current = map(&[(QUARANTINED, "m-1")]);
        let now = SystemTime::UNIX_EPOCH;
        let a = rollback_annotations(&current, "m-2", "error_ratio 1 > 0.05", "{}", now);
        assert_eq!(a[QUARANTINED], "m-1,m-2");
        let again = map(&[(QUARANTINED, "m-1,m-2")]);
        let b = rollback_annotations(&again, "m-2", "x", "{}", now);
        assert_eq!(b[QUARANTINED], "m-1,m-2");
        assert_eq!(a[ROLLBACK_TIME], "1970-01-01T00:00:00.000Z");
        assert!(is_quarantined(&again, "m-2") && !is_quarantined(&again, "m-3"));
        assert_eq!(a[VERDICT], "{}");
    }

    #[test]
    fn deadline_annotations_override_the_defaults_and_bad_ones_are_ignored() {
        let d = Duration::from_secs(3600);
        let a = map(&[(DECISION_DEADLINE, "10m"), (DEADLINE_ACTION, "rollback")]);
        assert_eq!(
            deadline(&a, d, DeadlineAction::Hold),
            (Duration::from_secs(600), DeadlineAction::Rollback)
        );
        let bad = map(&[(DECISION_DEADLINE, "soon"), (DEADLINE_ACTION, "yolo")]);
        assert_eq!(
            deadline(&bad, d, DeadlineAction::Hold),
            (d, DeadlineAction::Hold)
        );
    }
}
