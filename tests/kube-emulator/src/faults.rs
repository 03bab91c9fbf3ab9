//! Per-test fault injection: RBAC denials, 409 storms, error codes, added latency and
//! connections cut mid-request. Counted faults fire on the next matching requests.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::status::ApiError;

#[derive(Debug, Default)]
struct FaultState {
    /// (verb, resource) pairs answered 403; `*` matches any.
    denied: Vec<(String, String)>,
    conflicts: u32,
    errors: Vec<(u16, u32)>,
    latency: Duration,
    resets: u32,
}

/// Handle to the emulator's faults; cheap to clone, shared with the server.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

/// What the server must do with a request before handling it.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Proceed,
    /// Drop the connection without answering.
    Reset,
    Fail(ApiError),
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer 403 Forbidden to `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, or `*`) on `resource` (plural, optionally `.group`, e.g.
    /// `services.serving.knative.dev`; or `*`) until [`Faults::allow`] or [`Faults::clear`].
    pub fn deny(&self, verb: &str, resource: &str) -> &Self {
        self.lock()
            .denied
            .push((verb.to_string(), resource.to_string()));
        self
    }

    /// Lifts a [`Faults::deny`].
    pub fn allow(&self, verb: &str, resource: &str) -> &Self {
        self.lock()
            .denied
            .retain(|(v, r)| !(v == verb && r == resource));
        self
    }

    /// The next `n` writes (update, patch, delete) answer 409 Conflict.
    pub fn conflicts(&self, n: u32) -> &Self {
        self.lock().conflicts += n;
        self
    }

    /// The next `n` resource requests answer `code` (e.g. 500, 503, 429) with a Status body.
    pub fn errors(&self, code: u16, n: u32) -> &Self {
        self.lock().errors.push((code, n));
        self
    }

    /// Every request waits `delay` before it is handled (`Duration::ZERO` to stop).
    pub fn latency(&self, delay: Duration) -> &Self {
        self.lock().latency = delay;
        self
    }

    /// The next `n` resource requests have their connection closed without a response.
    pub fn reset_connections(&self, n: u32) -> &Self {
        self.lock().resets += n;
        self
    }

    /// Removes every fault.
    pub fn clear(&self) -> &Self {
        *self.lock() = FaultState::default();
        self
    }

    pub(crate) fn latency_now(&self) -> Duration {
        self.lock().latency
    }

    /// Decides the fate of a resource request; consumes one count of a counted fault.
    pub(crate) fn decide(&self, req: &RequestFacts<'_>) -> Decision {
        let mut s = self.lock();
        if s.resets > 0 {
            s.resets -= 1;
            return Decision::Reset;
        }
        if let Some(slot) = s.errors.iter_mut().find(|(_, n)| *n > 0) {
            slot.1 -= 1;
            let code = slot.0;
            s.errors.retain(|(_, n)| *n > 0);
            return Decision::Fail(ApiError::injected(code));
        }
        let qualified = crate::status::qualified(req.plural, req.group);
        let denied = s.denied.iter().any(|(v, r)| {
            (v == "*" || v == req.verb)
                && (r == "*" || *r == qualified || (*r == req.plural && !r.contains('.')))
        });
        if denied {
            return Decision::Fail(ApiError::forbidden(
                req.verb,
                req.group,
                req.plural,
                req.namespace,
                req.name,
                req.user,
            ));
        }
        if s.conflicts > 0 && matches!(req.verb, "update" | "patch" | "delete") {
            s.conflicts -= 1;
            return Decision::Fail(ApiError::conflict(req.group, req.plural, req.name));
        }
        Decision::Proceed
    }
}

/// The parts of a request faults match on.
pub(crate) struct RequestFacts<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub plural: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(verb: &'static str) -> RequestFacts<'static> {
        RequestFacts {
            verb,
            group: "serving.knative.dev",
            plural: "services",
            namespace: "default",
            name: "m",
            user: "u",
        }
    }

    #[test]
    fn counted_faults_fire_exactly_n_times() {
        let f = Faults::default();
        f.conflicts(2).errors(503, 1);
        assert!(matches!(f.decide(&facts("patch")), Decision::Fail(e) if e.code == 503));
        assert!(
            matches!(f.decide(&facts("get")), Decision::Proceed),
            "conflicts only hit writes"
        );
        assert!(matches!(f.decide(&facts("patch")), Decision::Fail(e) if e.code == 409));
        assert!(matches!(f.decide(&facts("update")), Decision::Fail(e) if e.code == 409));
        assert_eq!(f.decide(&facts("patch")), Decision::Proceed);
    }

    #[test]
    fn denials_match_verb_and_qualified_or_plain_resource() {
        let f = Faults::default();
        f.deny("patch", "services.serving.knative.dev");
        assert!(
            matches!(f.decide(&facts("patch")), Decision::Fail(e) if e.code == 403 && e.message.contains("cannot patch resource \"services\""))
        );
        assert_eq!(f.decide(&facts("get")), Decision::Proceed);
        f.allow("patch", "services.serving.knative.dev")
            .deny("*", "services");
        assert!(matches!(f.decide(&facts("get")), Decision::Fail(e) if e.code == 403));
        f.clear();
        assert_eq!(f.decide(&facts("get")), Decision::Proceed);
    }
}
