//! `bench/run --smoke` on the debug binaries the suite built, so the harness of
//! BENCHMARKS.md cannot rot: every scenario runs against its real baselines (nginx,
//! HAProxy, the TLS floors, valgrind) for a second each, signature verification
//! for a few checks of each kind against a real registry, the scale curves and the
//! judgement grid for a few points and steps, and the results folder must
//! hold every figure the report promises, consistent with the load that was sent.
//! No number is judged here: debug builds say nothing about speed.

use std::{path::Path, process::Command};

use guardrail_e2e::{bins::bin, webhook::workspace_root};
use serde_json::Value;

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {v}"))
}

/// A summary figure (median, min, max, n) that is well-formed.
fn spread(v: &Value, what: &str) -> f64 {
    let (median, min, max) = (
        number(&v["median"], what),
        number(&v["min"], what),
        number(&v["max"], what),
    );
    assert!(min <= median && median <= max, "{what}: {v}");
    assert!(v["n"].as_u64().is_some_and(|n| n >= 1), "{what}: {v}");
    median
}

#[test]
fn bench_run_smoke_writes_every_figure_against_its_baselines() {
    let root = workspace_root();
    let debug = bin("guardrail-sidecar")
        .parent()
        .expect("target/debug")
        .to_path_buf();
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(root.join("bench/run"))
        .args(["--smoke", "--no-install", "--bin-dir"])
        .arg(&debug)
        .arg("--out")
        .arg(out.path())
        .current_dir(&root)
        .output()
        .expect("bench/run starts (tests/setup/bench.sh installs what it needs)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/run --smoke failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    assert_eq!(results["mode"], "smoke");
    assert_eq!(results["environment"]["profile"], "debug");
    let settings = &results["mode_settings"];
    let seconds = number(&settings["seconds"], "seconds");
    let summary = &results["summary"];

    // Sidecar: each path at the fixed rate got about the load that was asked for, each
    // proxy's CPU and memory were read, and the paired figures exist.
    let rate = number(&settings["rates"][0], "rate");
    let at = &summary["sidecar"]["workers=1"][format!("{rate}")];
    const CHECKED: [&str; 3] = ["sidecar+sanity", "sidecar+sanity v2", "sidecar+sanity sse"];
    for target in ["direct", "sidecar", "nginx", "haproxy"]
        .into_iter()
        .chain(CHECKED)
    {
        let t = &at["targets"][target];
        let rps = spread(&t["rps"], &format!("{target} rps"));
        assert!(
            (rps - rate).abs() <= rate * 0.2,
            "{target}: {rps} req/s where {rate} was sent"
        );
        spread(&t["latency_p99_ms"], &format!("{target} p99"));
        if target != "direct" {
            for p in ["p50", "p90", "p99", "p999"] {
                spread(&t[format!("added_{p}_ms")], &format!("{target} added {p}"));
            }
            let cpu = spread(&t["cpu_s_per_1000"], &format!("{target} cpu"));
            assert!(cpu > 0.0, "{target}: no CPU time read from /proc");
            let rss = spread(&t["peak_rss_mib"], &format!("{target} rss"));
            assert!(rss > 1.0, "{target}: peak RSS {rss} MiB");
        }
    }
    for (name, ratio) in at["ratios"].as_object().expect("ratios") {
        assert!(spread(ratio, name) > 0.0, "{name}");
    }
    // The checked sidecar checked every answer of each protocol and found them sane
    // (the harness fails otherwise; the counts are kept with the samples).
    let counts: Vec<&Value> = (results["samples"].as_array().unwrap().iter())
        .filter(|s| s["scenario"] == "sidecar-sanity-counts")
        .collect();
    assert_eq!(counts.len(), 1, "one count per worker setting: {counts:?}");
    let answered = number(&counts[0]["answered"], "answered");
    assert!(answered > 0.0, "{}", counts[0]);
    assert!(
        number(&counts[0]["checked"], "checked") >= answered,
        "{}",
        counts[0]
    );
    assert_eq!(number(&counts[0]["failed"], "failed"), 0.0, "{}", counts[0]);
    let saturation = &summary["sidecar"]["workers=1"]["saturation"];
    assert!(spread(&saturation["targets"]["sidecar"]["rps"], "saturation") > rate);

    // Streaming: every stream arrived whole on both paths (the harness compares the
    // bytes), and through the sidecar its first event came while the model was still
    // sending: well before the end of a stream paced over tens of milliseconds.
    let streaming = &summary["streaming"];
    let paced = number(&streaming["interval_ms"], "interval")
        * (number(&streaming["events"], "events") - 1.0);
    for target in ["direct", "sidecar+sanity sse"] {
        let t = &streaming["targets"][target];
        let first = spread(&t["ttfb_ms_p50"], &format!("{target} first byte"));
        let end = spread(&t["total_ms_p50"], &format!("{target} end"));
        assert!(
            end >= paced,
            "{target}: a stream paced over {paced} ms ended in {end}"
        );
        assert!(
            first < end - paced / 2.0,
            "{target}: first byte at {first} ms of {end}: the stream was held back"
        );
    }
    for figure in ["ttfb_ms_p50", "ttfb_ms_p99", "total_ms_p50", "total_ms_p99"] {
        spread(&streaming["added"][figure], figure);
    }
    let counted: Vec<&Value> = (results["samples"].as_array().unwrap().iter())
        .filter(|s| s["scenario"] == "streaming-sanity-counts")
        .collect();
    assert_eq!(counted.len(), 1);
    let streams = number(&counted[0]["answered"], "streams");
    assert_eq!(
        streams,
        number(&settings["sse_streams"], "sse_streams") * number(&settings["repetitions"], "reps")
    );
    assert!(number(&counted[0]["checked"], "checked") >= streams);
    assert_eq!(number(&counted[0]["failed"], "failed"), 0.0);

    // Webhook: the three servers answered the review; the paired figures exist.
    let rate = number(&settings["webhook_rates"][0], "webhook rate");
    let at = &summary["webhook"]["workers=1"][format!("{rate}")];
    for target in ["webhook", "axum+rustls floor", "nginx floor"] {
        let t = &at["targets"][target];
        let rps = spread(&t["rps"], &format!("{target} rps"));
        assert!((rps - rate).abs() <= rate * 0.2, "{target}: {rps} req/s");
        assert!(spread(&t["cpu_us_per_request"], target) > 0.0);
    }
    for (name, figure) in at["paired"].as_object().expect("paired") {
        spread(figure, name);
    }

    // Signatures: each kind checked as often as asked, cold through the registry (so at
    // least a manifest read per check), its percentiles in order.
    let signatures = &summary["signatures"];
    for kind in [
        "cold key .sig",
        "cold keyless .sig",
        "cold key v3 bundle",
        "cold keyless v3 bundle",
        "warm",
    ] {
        let (unit, count) = if kind == "warm" {
            ("us", "signature_warm")
        } else {
            ("ms", "signature_cold")
        };
        let f = &signatures["kinds"][kind];
        assert_eq!(f["checks"], settings[count], "{kind}: {f}");
        let ps: Vec<f64> = ["p50", "p90", "p99", "max"]
            .iter()
            .map(|p| spread(&f[format!("{p}_{unit}")], &format!("{kind} {p}")))
            .collect();
        assert!(ps[0] > 0.0 && ps.is_sorted(), "{kind}: {f}");
    }
    for (kind, requests) in signatures["registry_requests_per_cold_check"]
        .as_object()
        .expect("registry requests")
    {
        assert!(spread(requests, kind) >= 1.0, "{kind}: {requests}");
    }
    assert!(spread(&signatures["cached_checks_per_s"], "cached checks") > 0.0);

    // Instructions: every process counted, over exactly the requests sent.
    let counted = &summary["instructions"]["instructions_per_request"];
    for target in ["sidecar", "nginx", "webhook", "axum+rustls floor"]
        .into_iter()
        .chain(CHECKED)
    {
        assert!(
            counted[target].as_u64().is_some_and(|n| n > 1000),
            "{target}: {counted}"
        );
    }
    let requests = settings["instruction_requests"].as_u64().unwrap();
    for sample in results["samples"].as_array().unwrap() {
        if sample["scenario"] == "instructions" {
            assert_eq!(sample["requests"].as_u64(), Some(requests), "{sample}");
            assert!(Path::new(sample["profile"].as_str().unwrap()).exists());
        }
        if sample["scenario"] == "sidecar" && !sample["rate"].is_null() {
            let expected = number(&sample["rate"], "rate") * seconds;
            let sent = number(&sample["requests"], "requests");
            assert!(
                (sent - expected).abs() <= expected * 0.2,
                "{sample}: {sent} requests where {expected} were due"
            );
        }
    }

    // Scale: every point of each curve was measured on its own server.
    let scale = &summary["scale"];
    for (curve, axis, key) in [
        ("scale-webhook", "containers", "scale_containers"),
        ("scale-webhook", "rules", "scale_rules"),
        ("scale-connections", "connections", "scale_connections"),
    ] {
        for n in settings[key].as_array().expect("scale points") {
            let point = &scale[curve][format!("{axis}={n}")];
            spread(&point["latency_p99_ms"], &format!("{curve} {axis}={n}"));
            assert!(spread(&point["cpu_us_per_request"], curve) > 0.0);
        }
    }

    // Judgement: the simulation grid ran whole; every step is counted, and a canary
    // whose every request fails is rolled back.
    let judged = &summary["judgement"];
    let cells = results["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["scenario"] == "judgement")
        .count();
    assert_eq!(judged["cells"].as_u64(), Some(cells as u64));
    assert_eq!(cells, 32, "the quick grid is 4 rates × 8 error multiples");
    let steps = settings["sim_steps"].as_u64().unwrap();
    let healthy = judged["healthy_steps"].as_u64().unwrap();
    assert!(healthy > 0 && healthy.is_multiple_of(steps), "{judged}");
    let rate = number(&judged["false_rollback_rate"], "false rollback rate");
    assert!((0.0..=1.0).contains(&rate), "{judged}");
    let (bad, rolled) = (
        judged["bad_steps"].as_u64().unwrap(),
        judged["bad_rolled_back"].as_u64().unwrap(),
    );
    assert!(rolled > 0 && rolled <= bad, "{judged}");

    // The report: a targets table with a row per target, and the plots it links.
    let md = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(md.contains("| target | bound | measured | met |"), "{md}");
    for row in [
        "sidecar CPU/request ÷ nginx",
        "sidecar+sanity v2 CPU/request ÷ nginx",
        "sidecar+sanity sse CPU/request ÷ nginx",
        "sidecar saturation throughput ÷ nginx",
        "sidecar added p99",
        "sidecar peak RSS",
        "webhook CPU/review − nginx floor",
        "webhook saturation throughput ÷ axum+rustls floor",
        "false rollbacks per healthy canary step",
        "scale-connections p99",
        "sidecar+sanity added time to first byte p99, SSE",
        "warm signature check p99",
        "cold key v3 bundle verification p99",
        "cold keyless v3 bundle verification p99",
    ] {
        assert!(md.contains(row), "results.md lacks {row:?}:\n{md}");
    }
    for plot in results["plots"].as_array().expect("plots") {
        let name = plot.as_str().unwrap();
        let bytes = std::fs::read(out.path().join(name)).expect("plot file");
        if name.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"), "{name}");
        }
        assert!(md.contains(name), "results.md does not link {name}");
    }
    let plots: Vec<&str> = (results["plots"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    for plot in [
        "sidecar-latency.svg",
        "sidecar-cpu.png",
        "throughput.svg",
        "scale.png",
        "signatures.svg",
        "judgement-delay.svg",
    ] {
        assert!(plots.contains(&plot), "no {plot} in {plots:?}");
    }
    assert!(md.contains("## Judgement"), "{md}");
}
