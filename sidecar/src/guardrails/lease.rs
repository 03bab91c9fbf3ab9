//! One judge per canary revision, elected with a `coordination.k8s.io/v1` Lease
//! (`guardrail-judge-<revision>`), the way client-go's leader election does it: a holder
//! renews every third of the duration; another pod takes over only after it has seen
//! the record unchanged for a whole duration *on its own monotonic clock*, so clock skew
//! between pods does not matter. Writes are conditional (resourceVersion): two pods
//! racing for an expired Lease cannot both win.
//!
//! A new judge of the same step starts a new test of it (it cannot know what its
//! predecessor had seen), so the Lease counts the judges of the current step
//! (`guardrail.dev/judge-generation`) and the g-th spends its share of the error budgets:
//! 0.9 for the first, then 0.1/((g−1)g) — together at most the whole budget.
//! Without the Lease (403, or the kind not served), and while its state is unknown (the
//! API unreachable), each pod judges alone on its own traffic and spends 1/`soloJudges`
//! of the budgets.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use tokio::time::Instant;

use super::api::{ApiError, Cluster};

/// The step a Lease's judges judged (see module docs).
pub const JUDGED_STEP: &str = "guardrail.dev/judged-step";
pub const JUDGE_GENERATION: &str = "guardrail.dev/judge-generation";

/// Where this pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not known yet (no attempt made, or only transient failures so far).
    Unknown,
    /// This pod judges the revision; it is the `generation`-th judge of the step.
    Judge { generation: u32 },
    /// Another pod judges; this one only publishes its summary.
    Follower { holder: String },
    /// No Lease can be used: judge alone.
    Solo { reason: String },
}

impl Standing {
    /// The share of the error budgets this pod may spend.
    pub fn budget_share(&self, solo_judges: u32) -> f64 {
        match self {
            Self::Judge { generation: 0 | 1 } => 0.9,
            Self::Judge { generation } => {
                let g = f64::from(*generation);
                0.1 / ((g - 1.0) * g)
            }
            // Not knowing (API down, Lease not settled) must not stop detection: judge
            // alone, at the solo share, until the Lease answers; writes stay conditional.
            Self::Solo { .. } | Self::Unknown => 1.0 / f64::from(solo_judges.max(1)),
            Self::Follower { .. } => 0.0,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Judge { .. } => "judge",
            Self::Follower { .. } => "follower",
            Self::Solo { .. } => "solo",
        }
    }
}

/// The Lease's name for `revision` (object names may have 253 characters).
pub fn lease_name(revision: &str) -> String {
    let mut name = format!("guardrail-judge-{revision}");
    name.truncate(253);
    name
}

/// The election state of one pod for one revision.
#[derive(Debug)]
pub struct Election {
    name: String,
    me: String,
    duration: Duration,
    standing: Standing,
    /// The other holder's record as last seen, and when (monotonic) it last changed.
    observed: Option<(String, Instant)>,
    last_attempt: Option<Instant>,
    step: String,
}

impl Election {
    pub fn new(revision: &str, me: &str, duration: Duration) -> Self {
        Self {
            name: lease_name(revision),
            me: me.to_string(),
            duration,
            standing: Standing::Unknown,
            observed: None,
            last_attempt: None,
            step: String::new(),
        }
    }

    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    /// Renews, acquires or watches the Lease when due (every third of the duration, or
    /// at once when the step changed while judging). `step` is the current step's key.
    pub async fn tick<C: Cluster>(&mut self, api: &C, step: &str, now: Instant) -> &Standing {
        let step_changed = self.step != step;
        // Retry quickly while the standing is unknown (an outage, a lost race).
        let period = if self.standing == Standing::Unknown {
            (self.duration / 3).min(Duration::from_secs(1))
        } else {
            self.duration / 3
        };
        let due = self
            .last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= period);
        let judging = matches!(self.standing, Standing::Judge { .. });
        if !(due || (step_changed && judging)) || matches!(self.standing, Standing::Solo { .. }) {
            return &self.standing;
        }
        self.last_attempt = Some(now);
        match self.attempt(api, step, now).await {
            Ok(s) => {
                self.step = step.to_string();
                self.standing = s;
            }
            Err(ApiError::Forbidden(m)) => {
                self.standing = Standing::Solo {
                    reason: format!("Leases are forbidden ({m}): judging alone"),
                };
            }
            Err(ApiError::NotFound(m)) => {
                self.standing = Standing::Solo {
                    reason: format!("Leases are not served ({m}): judging alone"),
                };
            }
            Err(e) => {
                // Transient: keep the standing; a judge that cannot renew keeps judging
                // (its writes would fail the same way), a follower keeps following.
                tracing::debug!(error = %e, lease = %self.name, "lease not renewed this time");
            }
        }
        &self.standing
    }

    async fn attempt<C: Cluster>(
        &mut self,
        api: &C,
        step: &str,
        now: Instant,
    ) -> Result<Standing, ApiError> {
        let Some(lease) = api.lease(&self.name).await? else {
            let fresh = self.record(None, step, 1);
            return match api.create_lease(&fresh).await {
                Ok(_) => Ok(Standing::Judge { generation: 1 }),
                Err(ApiError::Conflict(_)) => Ok(Standing::Follower {
                    holder: "another pod (created at the same time)".into(),
                }),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let annotations = lease.metadata.annotations.clone().unwrap_or_default();
        let judged = annotations.get(JUDGED_STEP).map(String::as_str);
        let generation: u32 = annotations
            .get(JUDGE_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        if holder == self.me {
            let g = if judged == Some(step) {
                generation.max(1)
            } else {
                1
            };
            let renewed = self.record(Some(&lease), step, g);
            return match api.replace_lease(&renewed).await {
                Ok(_) => Ok(Standing::Judge { generation: g }),
                Err(ApiError::Conflict(_)) => Ok(Standing::Unknown),
                Err(e) => Err(e),
            };
        }
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let changed_at = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        };
        let expired =
            holder.is_empty() || now.saturating_duration_since(changed_at) >= self.duration;
        if !expired {
            return Ok(Standing::Follower { holder });
        }
        let g = if judged == Some(step) {
            generation + 1
        } else {
            1
        };
        let taken = self.record(Some(&lease), step, g);
        match api.replace_lease(&taken).await {
            Ok(_) => {
                tracing::info!(lease = %self.name, previous = %holder, generation = g, "took over as judge");
                Ok(Standing::Judge { generation: g })
            }
            Err(ApiError::Conflict(_)) => Ok(Standing::Follower { holder }),
            Err(e) => Err(e),
        }
    }

    /// The Lease as this pod writes it: holder, renew time, transitions and the step's
    /// judge count; `base` keeps the resourceVersion (a conditional write).
    fn record(&self, base: Option<&Lease>, step: &str, generation: u32) -> Lease {
        let now = Timestamp::now();
        let old = base.and_then(|l| l.spec.clone()).unwrap_or_default();
        let was_mine = old.holder_identity.as_deref() == Some(self.me.as_str());
        let transitions =
            old.lease_transitions.unwrap_or(0) + i32::from(base.is_some() && !was_mine);
        let mut annotations: BTreeMap<String, String> = base
            .and_then(|l| l.metadata.annotations.clone())
            .unwrap_or_default();
        annotations.insert(JUDGED_STEP.into(), step.to_string());
        annotations.insert(JUDGE_GENERATION.into(), generation.to_string());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: base.and_then(|l| l.metadata.resource_version.clone()),
                annotations: Some(annotations),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "guardrail".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.me.clone()),
                lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
                acquire_time: if was_mine {
                    old.acquire_time
                } else {
                    Some(MicroTime(now))
                },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_shares_of_successive_judges_sum_to_at_most_one() {
        let total: f64 = (1..=10_000)
            .map(|g| Standing::Judge { generation: g }.budget_share(10))
            .sum();
        assert!(total <= 1.0 + 1e-12 && total > 0.99, "{total}");
        let solo = Standing::Solo {
            reason: String::new(),
        }
        .budget_share(10);
        assert!((solo - 0.1).abs() < 1e-12);
        assert_eq!(
            Standing::Follower { holder: "x".into() }.budget_share(10),
            0.0
        );
    }

    #[test]
    fn lease_names_fit_object_names() {
        assert_eq!(lease_name("m-00002"), "guardrail-judge-m-00002");
        assert_eq!(lease_name(&"r".repeat(300)).len(), 253);
    }
}
