"""Alternating, repeated measurement of several targets, and the paired statistics the
report gives: every figure is against a baseline measured in the same run, alternating
A/B (the order rotates each repetition), medians of the repetitions with min and max,
because a shared 2-core machine drifts between minutes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import load
from .procs import Proc


@dataclass
class Target:
    """Something to load: a URL, how to call it, and the process whose cost is ours to
    count (None for the direct path, whose server is shared by every path)."""
    name: str
    request: load.Load
    proc: Proc | None = None


@dataclass
class Plan:
    rates: list[int | None]  # None: saturation
    repetitions: int
    seconds: float
    connections: int
    labels: dict = field(default_factory=dict)  # e.g. {"scenario": "sidecar", "workers": 1}


def sample(oha: str, target: Target, rate: int | None, plan: Plan) -> dict:
    request = replace(target.request, rate=rate, seconds=plan.seconds,
                      connections=plan.connections)
    proc = target.proc
    if proc is not None:
        proc.reset_peak_rss()
        cpu_before = proc.cpu_seconds()
    result = load.run(oha, request)
    row = {"target": target.name, "rate": rate, **result.as_dict()}
    if proc is not None:
        cpu = proc.cpu_seconds() - cpu_before
        row["cpu_s_per_1000"] = round(cpu / (result.requests / 1000), 5)
        row["cpu_us_per_request"] = round(cpu / result.requests * 1e6, 2)
        row["peak_rss_mib"] = round(proc.peak_rss_kib() / 1024, 2)
    return row


def run(oha: str, targets: list[Target], plan: Plan, progress=print) -> list[dict]:
    """Every (repetition, rate) runs all targets back to back, in an order that rotates
    with the repetition, so drift hits each target alike."""
    rows = []
    for rep in range(plan.repetitions):
        for rate in plan.rates:
            shift = rep % len(targets)
            for target in targets[shift:] + targets[:shift]:
                row = {**plan.labels, "rep": rep, **sample(oha, target, rate, plan)}
                progress(f"  {describe(row)}")
                rows.append(row)
    return rows


def describe(row: dict) -> str:
    rate = "saturation" if row["rate"] is None else f"{row['rate']}/s"
    cpu = f" cpu {row['cpu_us_per_request']} µs/req" if "cpu_us_per_request" in row else ""
    return (f"{row.get('scenario', '')} w={row.get('workers', '')} rep {row['rep']} "
            f"{row['target']:<16} {rate:>10}: {row['rps']:>9.0f} req/s "
            f"p50 {row['latency_ms']['p50']:.3f} p99 {row['latency_ms']['p99']:.3f} ms{cpu}")


def spread(values: list[float]) -> dict | None:
    """Median, min, max and count: how every figure is reported."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), 5), "min": round(min(values), 5),
            "max": round(max(values), 5), "n": len(values)}


def metric(row: dict, name: str) -> float | None:
    """A row's metric by dotted name, e.g. `latency_ms.p99`."""
    value = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def paired(rows: list[dict], target: str, baseline: str, name: str, how: str,
           **where) -> dict | None:
    """`target` against `baseline` on the same repetition and rate (and labels in
    `where`): `how` is "difference" (target − baseline) or "ratio" (target ÷ baseline)."""
    def key(row):
        return (row["rep"], row["rate"])
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    base = {key(r): metric(r, name) for r in chosen if r["target"] == baseline}
    values = []
    for r in chosen:
        if r["target"] != target or key(r) not in base:
            continue
        a, b = metric(r, name), base[key(r)]
        if a is None or b is None:
            continue
        if how == "difference":
            values.append(a - b)
        elif b:
            values.append(a / b)
    return spread(values)


def summary(rows: list[dict], name: str, **where) -> dict | None:
    return spread([metric(r, name) for r in rows
                   if all(r.get(k) == v for k, v in where.items())])


def write_body(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path
