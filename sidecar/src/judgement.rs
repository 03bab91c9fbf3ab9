//! The judgement core: pure functions from a revision's evidence to a verdict with its
//! numbers. No I/O and no clock: the loop (`guardrails`), `/guardrails`, the unit tests
//! and the simulation harness (`guardrail-sim`) all call exactly this code.
//!
//! - `sequential`: anytime-valid Bernoulli tests and confidence bounds (mSPRT).
//! - `summary`: the mergeable counts and histograms a pod publishes.
//! - `step`: a step's evidence across pods (baselines, checkpoints).
//! - `verdict`: every guardrail's test, the α split, the revision's verdict.

pub mod sequential;
pub mod simulate;
pub mod step;
pub mod summary;
pub mod verdict;

pub use step::{PeerReport, StepEvidence};
pub use summary::Summary;
pub use verdict::{judge, Budget, Finding, Guardrail, Judgement, State};
