//! `guardrail-sim`: the guardrail simulation grid (docs/guardrails.md, "Measured").
//!
//! ```sh
//! cargo run --release -p guardrail-sidecar --bin guardrail-sim -- --out target/sim
//! ```
//!
//! Runs seeded canary steps through the real judgement for every cell of traffic ×
//! pods × true error ratio × step duration, and writes `results.json`, `table.md` and
//! `delay.svg` into `--out`.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use guardrail_sidecar::judgement::simulate::{
    quantile, run_cell, wald_asn, Cell, CellResult, Settings,
};

#[derive(Parser, Debug)]
#[command(version, about = "Guardrail judgement simulation grid")]
struct Args {
    /// Steps per cell.
    #[arg(long, default_value_t = 1000)]
    steps: u32,
    /// `full` (the documented grid) or `quick` (1 pod, 10-minute steps).
    #[arg(long, default_value = "full")]
    grid: String,
    /// Output directory.
    #[arg(long, default_value = "target/guardrail-sim")]
    out: PathBuf,
    /// Threads (cells run in parallel).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 20261201)]
    seed: u64,
}

const MULTIPLES: [f64; 8] = [0.0, 0.4, 0.8, 1.0, 1.5, 2.0, 10.0, f64::INFINITY];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (rates, pods, durations): (&[f64], &[u32], &[u64]) = match args.grid.as_str() {
        "full" => (&[0.1, 1.0, 10.0, 100.0], &[1, 3, 10], &[600, 3600]),
        "quick" => (&[0.1, 1.0, 10.0, 100.0], &[1], &[600]),
        other => anyhow::bail!("--grid must be full or quick, not {other:?}"),
    };
    let mut cells = Vec::new();
    for &step in durations {
        for &pods in pods {
            for &rate in rates {
                for &multiple in &MULTIPLES {
                    cells.push(Cell {
                        rate,
                        pods,
                        multiple,
                        step: Duration::from_secs(step),
                    });
                }
            }
        }
    }
    let settings = Settings::default();
    let started = std::time::Instant::now();
    let threads = args.threads.max(1);
    // Cells differ in cost by orders of magnitude (1-hour steps at 1000 req/s against
    // 10-minute ones at 0.1): threads take the next cell as they finish one.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, CellResult)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (cells, settings, next) = (&cells, &settings, &next);
                let (steps, seed) = (args.steps, args.seed);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = cells.get(i) else { break done };
                        done.push((i, run_cell(*c, steps, seed ^ (i as u64) << 20, settings)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<CellResult> = results.into_iter().map(|(_, r)| r).collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let table = table(&results, &settings);
    std::fs::write(args.out.join("table.md"), &table)?;
    std::fs::write(args.out.join("delay.svg"), svg(&results))?;
    println!("{table}");
    println!(
        "{} cells × {} steps in {:.0}s; wrote {}",
        cells.len(),
        args.steps,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

fn multiple_label(m: f64) -> String {
    if m.is_infinite() {
        "all fail".into()
    } else {
        format!("{m}×")
    }
}

fn table(results: &[CellResult], settings: &Settings) -> String {
    let limit = settings.thresholds.max_error_ratio.unwrap_or(0.05);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Error-ratio limit {limit}, falseRollbackRate {} per step (defaults). Wald SPRT expected sample size for p1 = 2×limit (α = 0.01, β = 0.05): {:.0} requests.\n",
        settings.budget.false_rollback / 0.9,
        wald_asn(limit, 2.0 * limit, 0.01, 0.05)
    );
    let _ = writeln!(
        t,
        "| step | pods | req/s/pod | true ratio | rollbacks | delay p50 / p95 (requests) | delay p50 / p95 (s) | healthy after p50 / p95 (s) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    let pair = |v: &[u64]| match (quantile(v, 0.5), quantile(v, 0.95)) {
        (Some(a), Some(b)) => format!("{a} / {b}"),
        _ => "–".into(),
    };
    for r in results {
        let c = r.cell;
        let _ = writeln!(
            t,
            "| {} min | {} | {} | {} | {} / {} ({:.1}%) | {} | {} | {} |",
            c.step.as_secs() / 60,
            c.pods,
            c.rate,
            multiple_label(c.multiple),
            r.rollbacks,
            r.steps,
            100.0 * r.rollback_ratio(),
            pair(&r.delay_requests),
            pair(&r.delay_seconds),
            if c.multiple < 1.0 {
                pair(&r.healthy_seconds)
            } else {
                "–".into()
            },
        );
    }
    t
}

/// Median detection delay (requests, log scale) against the true ratio, one line per
/// traffic level, for 1 pod and 10-minute steps.
fn svg(results: &[CellResult]) -> String {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let xs: Vec<f64> = MULTIPLES.iter().copied().filter(|m| *m > 1.0).collect();
    let x_of = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (xs.len() - 1) as f64;
    let y_of = |v: f64| {
        let (lo, hi) = (0.0_f64, 4.0_f64); // 1 .. 10^4 requests
        h - pad - (h - 2.0 * pad) * ((v.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">Median requests to rollback (1 pod, 10-minute steps)</text>\n",
        w / 2.0
    );
    for e in 0..=4 {
        let y = y_of(10f64.powi(e));
        let _ = writeln!(
            s,
            "<line x1=\"{pad}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            w - pad,
            pad - 6.0,
            y + 4.0,
            10u64.pow(e as u32)
        );
    }
    for (i, m) in xs.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x_of(i),
            h - pad + 18.0,
            multiple_label(*m)
        );
    }
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
    for (ci, rate) in [0.1, 1.0, 10.0, 100.0].iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let r = results.iter().find(|r| {
                    r.cell.pods == 1
                        && r.cell.step.as_secs() == 600
                        && r.cell.rate == *rate
                        && (r.cell.multiple == *m)
                })?;
                let med = quantile(&r.delay_requests, 0.5)? as f64;
                Some(format!("{:.1},{:.1}", x_of(i), y_of(med)))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"{}\">{rate} req/s</text>",
            colors[ci],
            points.join(" "),
            w - pad + 4.0,
            pad + 16.0 * ci as f64,
            colors[ci]
        );
    }
    s.push_str("</svg>\n");
    s
}
