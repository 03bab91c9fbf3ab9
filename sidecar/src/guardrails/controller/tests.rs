//! The loop on paused time against an in-memory API server: what it writes, how often
//! it calls, and what it does on 409, 5xx, 403 and outages, without the emulator. The
//! fake keeps resourceVersions and applies merge patches the way the API server does
//! for our writes (a stale `metadata.resourceVersion` is a 409).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use prometheus_client::{encoding::text::encode, registry::Registry};
use serde_json::{json, Value};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::{
    guardrails::{
        api::{ApiError, Cluster},
        config::{DeadlineAction, GuardrailsConfig},
        lease::{lease_name, JUDGED_STEP, JUDGE_GENERATION},
        local::Local,
        metrics::GuardrailMetrics,
        records,
        view::{Subject, View},
    },
    identity::Identity,
    window::{Outcome, SanityOutcome, Window},
};

const CANARY: &str = "m-00002";
const STABLE: &str = "m-00001";
const POD: &str = "m-00002-deployment-7d9f4-abcde";

#[derive(Debug, Clone)]
struct Recorded {
    warning: bool,
    reason: String,
    note: String,
}

#[derive(Default)]
struct State {
    service: Value,
    version: u64,
    lease: Option<Lease>,
    lease_version: u64,
    /// While set, every call fails with it (an API outage).
    outage: Option<ApiError>,
    /// The next patches fail with these, in order.
    patch_failures: VecDeque<ApiError>,
    /// Every patch is refused with 403.
    forbid_patches: bool,
    /// The next patches lose a race: another writer changes the Service first.
    raced_patches: usize,
    view_calls: Vec<Instant>,
    /// Every patch attempt: when, and whether it was applied.
    patch_calls: Vec<(Instant, bool)>,
    /// Applied patches, in order.
    written: Vec<Value>,
    events: Vec<Recorded>,
}

/// An in-memory API server for one namespace, shared by the test and the loop.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    /// A Knative Service splitting traffic between STABLE and CANARY.
    fn knative(canary_percent: i64, annotations: Value) -> Self {
        let fake = Self::default();
        fake.state().service = json!({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": { "name": "m", "namespace": "ns", "resourceVersion": "1",
                          "annotations": annotations },
            "spec": { "traffic": [
                { "revisionName": STABLE, "percent": 100 - canary_percent, "tag": "previous" },
                { "revisionName": CANARY, "percent": canary_percent },
            ]},
            "status": { "latestReadyRevisionName": CANARY },
        });
        fake.state().version = 1;
        fake
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn written(&self) -> Vec<Value> {
        self.state().written.clone()
    }

    fn events(&self) -> Vec<Recorded> {
        self.state().events.clone()
    }

    fn percent_of(&self, revision: &str) -> i64 {
        self.state().service["spec"]["traffic"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["revisionName"] == revision)
            .filter_map(|t| t["percent"].as_i64())
            .sum()
    }

    fn annotation(&self, key: &str) -> Option<String> {
        self.state().service["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_string)
    }

    /// Another pod holds the judge Lease for `step` (renewing it when called again).
    fn hold_lease(&self, holder: &str, step: &str) {
        let mut s = self.state();
        s.lease_version += 1;
        let mut lease: Lease = serde_json::from_value(json!({
            "metadata": { "name": lease_name(CANARY),
                          "annotations": { JUDGED_STEP: step, JUDGE_GENERATION: "1" } },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 },
        }))
        .expect("lease");
        lease.metadata.resource_version = Some(s.lease_version.to_string());
        s.lease = Some(lease);
    }

    fn outage(&self) -> Result<(), ApiError> {
        self.state().outage.clone().map_or(Ok(()), Err)
    }
}

impl Cluster for Fake {
    async fn view(&self, _service: &str) -> Result<View, ApiError> {
        let mut s = self.state();
        s.view_calls.push(Instant::now());
        if let Some(e) = s.outage.clone() {
            return Err(e);
        }
        Ok(View {
            service: s.service.clone(),
            isvc: None,
        })
    }

    async fn patch(&self, subject: Subject, name: &str, patch: &Value) -> Result<Value, ApiError> {
        assert_eq!((subject, name), (Subject::KnativeService, "m"));
        let mut s = self.state();
        let now = Instant::now();
        if let Some(e) = s.outage.clone().or_else(|| s.patch_failures.pop_front()) {
            s.patch_calls.push((now, false));
            return Err(e);
        }
        if s.forbid_patches {
            s.patch_calls.push((now, false));
            return Err(ApiError::Forbidden(
                "services.serving.knative.dev \"m\" is forbidden".into(),
            ));
        }
        if s.raced_patches > 0 {
            s.raced_patches -= 1;
            s.version += 1;
            let v = s.version.to_string();
            s.service["metadata"]["resourceVersion"] = json!(v);
            s.service["metadata"]["annotations"]["other.example/touched"] = json!(v);
        }
        let precondition = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if precondition != Some(s.version.to_string().as_str()) {
            s.patch_calls.push((now, false));
            return Err(ApiError::Conflict(
                "the object has been modified; please apply your changes to the latest version"
                    .into(),
            ));
        }
        json_patch::merge(&mut s.service, patch);
        s.version += 1;
        let v = s.version.to_string();
        s.service["metadata"]["resourceVersion"] = json!(v);
        s.patch_calls.push((now, true));
        s.written.push(patch.clone());
        Ok(s.service.clone())
    }

    async fn event(
        &self,
        _subject: Subject,
        _object: &Value,
        warning: bool,
        reason: &str,
        note: String,
    ) -> Result<(), ApiError> {
        self.outage()?;
        self.state().events.push(Recorded {
            warning,
            reason: reason.to_string(),
            note,
        });
        Ok(())
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, ApiError> {
        self.outage()?;
        assert_eq!(name, lease_name(CANARY));
        Ok(self.state().lease.clone())
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        self.outage()?;
        let mut s = self.state();
        if s.lease.is_some() {
            return Err(ApiError::Conflict("leases \"…\" already exists".into()));
        }
        s.lease_version += 1;
        let mut stored = lease.clone();
        stored.metadata.resource_version = Some(s.lease_version.to_string());
        s.lease = Some(stored.clone());
        Ok(stored)
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        self.outage()?;
        let mut s = self.state();
        let current = s
            .lease
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if lease.metadata.resource_version != current {
            return Err(ApiError::Conflict("the object has been modified".into()));
        }
        s.lease_version += 1;
        let mut stored = lease.clone();
        stored.metadata.resource_version = Some(s.lease_version.to_string());
        s.lease = Some(stored.clone());
        Ok(stored)
    }

    async fn pods(&self, _revision: &str) -> Result<Vec<Pod>, ApiError> {
        self.outage()?;
        Ok(Vec::new())
    }
}

/// A running loop over `fake`, and the window its traffic goes into.
struct Harness {
    window: Arc<Window>,
    local: Arc<Local>,
    registry: Registry,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    started: Instant,
}

impl Harness {
    fn start(fake: &Fake, config: GuardrailsConfig) -> Self {
        let identity = Identity {
            revision: CANARY.into(),
            configuration: "m".into(),
            service: "m".into(),
            namespace: "ns".into(),
            pod: POD.into(),
        };
        let window = Arc::new(Window::new(Duration::from_secs(60), 12, None));
        let local = Arc::new(Local::new(identity.clone(), window.clone()));
        let mut registry = Registry::with_prefix("guardrail");
        let metrics = GuardrailMetrics::register(&mut registry);
        let controller = Controller::new(config, identity, local.clone(), metrics, fake.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(controller.run(shutdown.clone()));
        Self {
            window,
            local,
            registry,
            shutdown,
            task,
            started: Instant::now(),
        }
    }

    fn request(&self, error: bool) {
        self.window.record(&Outcome {
            latency: Duration::from_millis(10),
            error,
            sanity: SanityOutcome::NotApplicable,
            truncated: false,
            scores: &[],
        });
    }

    /// Sends requests every 100 ms for `duration`, or until `until` holds; returns how
    /// many were sent.
    async fn traffic(&self, error: bool, duration: Duration, until: impl Fn() -> bool) -> u64 {
        let end = Instant::now() + duration;
        let mut sent = 0;
        while Instant::now() < end && !until() {
            self.request(error);
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    }

    fn metric(&self, line_start: &str) -> f64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("encode");
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the loop ends without a panic");
    }
}

fn rollbacks(fake: &Fake) -> usize {
    fake.written()
        .iter()
        .filter(|p| {
            p.pointer("/metadata/annotations/guardrail.dev~1rolled-back-revision")
                .is_some()
        })
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_failing_canary_is_rolled_back_once_with_its_verdict_and_a_warning() {
    let fake = Fake::knative(5, json!({}));
    let h = Harness::start(&fake, GuardrailsConfig::default());
    let sent = h
        .traffic(true, Duration::from_secs(30), || rollbacks(&fake) > 0)
        .await;
    assert!(sent <= 10, "rolled back after {sent} failed requests");
    // The canary keeps failing (its pods still get retried traffic): nothing more.
    h.traffic(true, Duration::from_secs(20), || false).await;
    assert_eq!(rollbacks(&fake), 1, "{:#?}", fake.written());
    assert_eq!((fake.percent_of(STABLE), fake.percent_of(CANARY)), (100, 0));
    assert_eq!(
        fake.annotation(records::QUARANTINED).as_deref(),
        Some(CANARY)
    );
    let verdict: Value =
        serde_json::from_str(&fake.annotation(records::VERDICT).expect("verdict")).expect("json");
    assert_eq!(verdict["state"], "breach");
    let error_ratio = verdict["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["guardrail"] == "error_ratio")
        .expect("error ratio finding");
    assert_eq!(error_ratio["state"], "breach");
    let events = fake.events();
    let rolled: Vec<_> = events
        .iter()
        .filter(|e| e.reason == "CanaryRolledBack")
        .collect();
    assert_eq!(rolled.len(), 1, "{events:#?}");
    assert!(rolled[0].warning && rolled[0].note.contains(STABLE));
    assert_eq!(
        h.metric("guardrail_actions_total{action=\"rollback\",outcome=\"written\"}"),
        1.0
    );
    // Rolled back, the revision is idle: `/guardrails` still shows why.
    let shown = h.local.verdict();
    assert_eq!(shown["state"], "not judging");
    assert_eq!(shown["lastJudgement"]["state"], "breach", "{shown:#}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_race_is_reread_and_recomputed_keeping_the_other_write() {
    let fake = Fake::knative(5, json!({}));
    fake.state().raced_patches = 2;
    let h = Harness::start(&fake, GuardrailsConfig::default());
    h.traffic(true, Duration::from_secs(30), || rollbacks(&fake) > 0)
        .await;
    let calls = fake.state().patch_calls.clone();
    assert_eq!(
        calls.iter().map(|c| c.1).collect::<Vec<_>>(),
        [false, false, true],
        "two conflicts, then the recomputed write"
    );
    assert_eq!(rollbacks(&fake), 1);
    assert_eq!(
        fake.annotation("other.example/touched").as_deref(),
        Some("3")
    );
    assert_eq!(
        h.metric("guardrail_kube_api_errors_total{reason=\"conflict\"}"),
        2.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_exponentially_then_the_rollback_lands_once() {
    let fake = Fake::knative(5, json!({}));
    fake.state().patch_failures =
        std::iter::repeat_n(ApiError::Transient("503 Service Unavailable".into()), 6).collect();
    let config = GuardrailsConfig::default();
    let (base, max) = (config.backoff_base, config.backoff_max);
    let h = Harness::start(&fake, config);
    h.traffic(true, Duration::from_secs(60), || rollbacks(&fake) > 0)
        .await;
    let calls = fake.state().patch_calls.clone();
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(calls[..6].iter().all(|c| !c.1) && calls[6].1);
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let cap = base.saturating_mul(1 << i).min(max);
        // Full jitter in [cap/2, cap]; the timer rounds up to the millisecond.
        assert!(
            gap >= cap / 2 && gap <= cap + Duration::from_millis(2),
            "retry {i} after {gap:?}, cap {cap:?}"
        );
    }
    h.traffic(true, Duration::from_secs(10), || false).await;
    assert_eq!(rollbacks(&fake), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_write_pauses_and_warns_instead_of_retrying_in_a_loop() {
    let fake = Fake::knative(5, json!({}));
    fake.state().forbid_patches = true;
    let config = GuardrailsConfig::default();
    let pause = config.forbidden_pause;
    let h = Harness::start(&fake, config);
    let run = Duration::from_secs(100);
    h.traffic(true, run, || false).await;
    let calls = fake.state().patch_calls.clone();
    // One attempt, then one per pause: never a tight loop.
    let most = 1 + (run.as_secs() / pause.as_secs()) as usize;
    assert!(
        (2..=most).contains(&calls.len()),
        "{} attempts in {run:?}",
        calls.len()
    );
    for pair in calls.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= pause, "{calls:?}");
    }
    let forbidden = fake
        .events()
        .iter()
        .filter(|e| e.reason == "GuardrailForbidden" && e.warning)
        .count();
    assert_eq!(forbidden, calls.len());
    assert_eq!((fake.percent_of(STABLE), fake.percent_of(CANARY)), (95, 5));
    assert_eq!(
        h.metric("guardrail_kube_api_errors_total{reason=\"forbidden\"}"),
        calls.len() as f64
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_breach_during_an_api_outage_is_rolled_back_once_when_the_api_returns() {
    let fake = Fake::knative(5, json!({}));
    let h = Harness::start(&fake, GuardrailsConfig::default());
    // Healthy traffic while the API is up: the Service and the Lease are read.
    h.traffic(false, Duration::from_secs(3), || false).await;
    fake.state().outage = Some(ApiError::Transient("connection refused".into()));
    let (views, patches) = {
        let s = fake.state();
        (s.view_calls.len(), s.patch_calls.len())
    };
    let outage = Duration::from_secs(30);
    h.traffic(true, outage, || false).await;
    let (views_during, patches_during) = {
        let s = fake.state();
        (s.view_calls.len() - views, s.patch_calls.len() - patches)
    };
    // Backoff (50 ms doubling to 5 s) bounds the calls: no spin on a dead API.
    assert!(patches_during >= 1, "the rollback was attempted");
    assert!(
        views_during + patches_during <= 40,
        "{views_during} reads and {patches_during} writes in {outage:?}"
    );
    assert_eq!(rollbacks(&fake), 0);
    fake.state().outage = None;
    h.traffic(true, Duration::from_secs(20), || false).await;
    assert_eq!(rollbacks(&fake), 1, "{:#?}", fake.written());
    assert_eq!((fake.percent_of(STABLE), fake.percent_of(CANARY)), (100, 0));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_healthy_canary_whose_step_has_lasted_moves_to_the_next_step() {
    let started = SystemTime::now() - Duration::from_secs(600);
    let fake = Fake::knative(
        5,
        json!({
            records::STEPS: "5,25,50,100",
            records::STEP_DURATION: "5m",
            records::STEP_STARTED: records::step_started(CANARY, 5, started),
        }),
    );
    let h = Harness::start(&fake, GuardrailsConfig::default());
    let promoted = || fake.percent_of(CANARY) != 5;
    h.traffic(false, Duration::from_secs(120), promoted).await;
    assert_eq!(
        (fake.percent_of(STABLE), fake.percent_of(CANARY)),
        (75, 25),
        "{:#}",
        h.local.verdict()
    );
    assert_eq!(rollbacks(&fake), 0);
    let step = fake.annotation(records::STEP_STARTED).expect("step record");
    assert!(step.starts_with(&format!("{CANARY}/25/")), "{step}");
    let verdict: Value =
        serde_json::from_str(&fake.annotation(records::VERDICT).expect("verdict")).expect("json");
    assert_eq!(verdict["state"], "healthy");
    assert!(fake
        .events()
        .iter()
        .any(|e| e.reason == "CanaryPromoted" && !e.warning));
    // The next step needs its own five minutes (of wall time): nothing more now.
    h.traffic(false, Duration::from_secs(30), || false).await;
    assert_eq!(fake.written().len(), 1, "{:#?}", fake.written());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_follower_waits_for_the_judge_and_takes_over_when_it_stops_renewing() {
    let fake = Fake::knative(5, json!({}));
    let step = format!("{CANARY}/5/-");
    fake.hold_lease("m-00002-deployment-7d9f4-other", &step);
    let h = Harness::start(&fake, GuardrailsConfig::default());
    // The judge renews every 5 s for 20 s; this pod's failing traffic is its to judge.
    let holder = {
        let fake = fake.clone();
        let step = step.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                fake.hold_lease("m-00002-deployment-7d9f4-other", &step);
            }
        })
    };
    h.traffic(true, Duration::from_secs(20), || false).await;
    assert_eq!(rollbacks(&fake), 0, "a follower never writes");
    assert_eq!(
        h.metric("guardrail_judge_standing{standing=\"follower\"}"),
        1.0
    );
    holder.await.expect("holder");
    h.traffic(true, Duration::from_secs(40), || rollbacks(&fake) > 0)
        .await;
    assert_eq!(rollbacks(&fake), 1);
    let first = fake.state().patch_calls[0].0 - h.started;
    // The last renewal was at 20 s; a takeover needs the record unchanged for 15 s.
    assert!(
        first >= Duration::from_secs(35),
        "took over after {first:?}"
    );
    let lease = fake.state().lease.clone().expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(POD)
    );
    let annotations = lease.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(JUDGE_GENERATION).map(String::as_str),
        Some("2")
    );
    let shown = h.local.verdict();
    let judged = shown.get("lastJudgement").unwrap_or(&shown);
    let notes = judged["notes"].to_string();
    assert!(notes.contains("judge #2"), "{notes}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_undecided_step_past_its_deadline_is_held_with_one_event() {
    let started = SystemTime::now() - Duration::from_secs(2 * 3600);
    let fake = Fake::knative(
        5,
        json!({ records::STEP_STARTED: records::step_started(CANARY, 5, started) }),
    );
    let config = GuardrailsConfig {
        deadline_action: DeadlineAction::Hold,
        ..GuardrailsConfig::default()
    };
    let h = Harness::start(&fake, config);
    // No traffic at all: nothing can be decided.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let held: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| e.reason == "GuardrailUndecided")
        .collect();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert!(held[0].warning && held[0].note.contains("holding traffic"));
    assert!(fake.written().is_empty());
    assert_eq!(
        h.metric("guardrail_deadline_actions_total{action=\"hold\",outcome=\"reached\"}"),
        1.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_stable_revision_never_acts_on_its_own_errors() {
    let fake = Fake::knative(0, json!({}));
    fake.state().service["spec"]["traffic"] = json!([{ "revisionName": CANARY, "percent": 100 }]);
    let h = Harness::start(&fake, GuardrailsConfig::default());
    h.traffic(true, Duration::from_secs(20), || false).await;
    assert!(fake.written().is_empty());
    assert!(fake.state().lease.is_none(), "no election outside a canary");
    assert_eq!(h.local.verdict()["state"], "not judging");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_promote_at_the_deadline_holds_instead() {
    let started = SystemTime::now() - Duration::from_secs(2 * 3600);
    let annotations = json!({
        records::STEPS: "5,25,50,100",
        records::STEP_STARTED: records::step_started(CANARY, 5, started),
        records::DEADLINE_ACTION: "promote",
    });
    for allowed in [true, false] {
        let fake = Fake::knative(5, annotations.clone());
        let mut config = GuardrailsConfig::default();
        config.overrides.allow_deadline_promote = allowed;
        let h = Harness::start(&fake, config);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let reasons: Vec<String> = fake.events().into_iter().map(|e| e.reason).collect();
        if allowed {
            assert_eq!(fake.percent_of(CANARY), 25, "{reasons:?}");
            assert!(reasons.contains(&"GuardrailPromotedWithoutEvidence".to_string()));
        } else {
            assert_eq!(fake.percent_of(CANARY), 5, "{reasons:?}");
            assert!(fake.written().is_empty());
            assert_eq!(reasons, ["GuardrailUndecided"]);
            assert_eq!(h.metric("guardrail_annotation_errors_total"), 1.0);
        }
        h.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_conflict_storm_delays_the_rollback_but_it_lands_exactly_once() {
    let fake = Fake::knative(5, json!({}));
    // Every write loses its race 25 times: more than one evaluation's maxConflicts.
    fake.state().raced_patches = 25;
    let h = Harness::start(&fake, GuardrailsConfig::default());
    h.traffic(true, Duration::from_secs(30), || rollbacks(&fake) > 0)
        .await;
    h.traffic(true, Duration::from_secs(10), || false).await;
    let calls = fake.state().patch_calls.clone();
    assert_eq!(rollbacks(&fake), 1);
    assert_eq!(calls.iter().filter(|c| c.1).count(), 1);
    assert_eq!(
        calls.len(),
        26,
        "each lost race is re-read and recomputed once"
    );
    assert_eq!((fake.percent_of(STABLE), fake.percent_of(CANARY)), (100, 0));
    assert_eq!(
        fake.annotation("other.example/touched").as_deref(),
        Some("26")
    );
    assert!(h.metric("guardrail_actions_total{action=\"rollback\",outcome=\"stopped\"}") >= 2.0);
    h.stop().await;
}
