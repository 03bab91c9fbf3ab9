//! The judgement's statistics against an independent implementation: scipy's binomial
//! pmf (in the Python venv the suite installs for KServe) recomputes the mixture SPRT,
//! its breach boundary and its confidence bound, which we compute in closed form.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use guardrail_sidecar::judgement::sequential::{self, Side, BREACH, HEALTHY};
use serde_json::{json, Value};

#[test]
fn mixture_sprt_boundaries_and_bounds_agree_with_scipy() {
    let mut cases = Vec::new();
    for &(n, p0, alpha) in &[
        (20u64, 0.05, 0.002),
        (200, 0.05, 0.002),
        (1_000, 0.01, 0.0005),
        (5_000, 0.05, 0.01),
        (50, 0.3, 0.05),
    ] {
        for k in [0, 1, n / 50, n / 20, n / 10, n / 2] {
            for side in ["above", "below"] {
                cases.push(json!({ "n": n, "k": k, "p0": p0, "alpha": alpha, "side": side }));
            }
        }
    }
    let spec = json!({ "breach": BREACH, "healthy": HEALTHY, "cases": cases });
    let mut child = Command::new(guardrail_e2e::kserve::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/oracle/mixture.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("write the cases");
    let output = child.wait_with_output().expect("python answers");
    assert!(output.status.success(), "the oracle failed");
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON answers");
    assert_eq!(answers.len(), cases.len());
    for (case, answer) in cases.iter().zip(&answers) {
        let n = case["n"].as_u64().expect("n");
        let k = case["k"].as_u64().expect("k");
        let p0 = case["p0"].as_f64().expect("p0");
        let alpha = case["alpha"].as_f64().expect("alpha");
        let side = if case["side"] == "above" {
            Side::Above
        } else {
            Side::Below
        };
        let ours = sequential::log_mixture(side, n, k, p0);
        let theirs = answer["log_mixture"].as_f64().expect("log_mixture");
        assert!(
            (ours - theirs).abs() <= 1e-7 * theirs.abs().max(1.0),
            "{case}: ours {ours}, scipy {theirs}"
        );
        let first = (0..=n).find(|&j| sequential::rejects(Side::Above, n, j, p0, alpha));
        assert_eq!(
            first,
            answer["first_breach_k"].as_u64(),
            "{case}: breach boundary"
        );
        if let Some(lower) = answer["lower_bound"].as_f64() {
            let ours = sequential::lower_bound(n, k, alpha);
            assert!(
                (ours - lower).abs() <= 1e-7 * lower,
                "{case}: bound {ours} vs {lower}"
            );
        }
    }
}
