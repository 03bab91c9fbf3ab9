"""Scenario 5, judgement: the simulation grid of docs/guardrails.md (false rollbacks of
healthy canaries, detection delay of bad ones), reproduced by running `guardrail-sim`,
the same per-revision sequential judgement the sidecar runs, on simulated traffic."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

from .procs import BenchError


def run(ctx) -> list[dict]:
    out = ctx.out / "judgement"
    sim = ctx.bins["guardrail-sim"]
    ctx.say(f"judgement: guardrail-sim --grid {ctx.mode.sim_grid} --steps {ctx.mode.sim_steps}")
    started = time.monotonic()
    done = subprocess.run([str(sim), "--grid", ctx.mode.sim_grid, "--steps",
                           str(ctx.mode.sim_steps), "--out", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"guardrail-sim failed ({done.returncode}): {done.stderr[-800:]}")
    cells = json.loads((out / "results.json").read_text())
    ctx.say(f"  {len(cells)} cells in {time.monotonic() - started:.0f} s")
    if (out / "delay.svg").exists():
        shutil.copy(out / "delay.svg", ctx.out / "judgement-delay.svg")
    return [{"scenario": "judgement", "target": "guardrail-sim", **cell} for cell in cells]


def multiple(row: dict) -> float:
    """The canary's error ratio as a multiple of the limit; JSON has no infinity, so
    "every request fails" arrives as null."""
    m = row["cell"]["multiple"]
    return float("inf") if m is None else m


def summarise(rows: list[dict], mode) -> dict:
    healthy = [r for r in rows if multiple(r) <= 1.0]
    bad = [r for r in rows if multiple(r) >= 2.0]
    steps = sum(r["steps"] for r in healthy)
    false = sum(r["rollbacks"] for r in healthy)
    return {"grid": mode.sim_grid, "steps_per_cell": mode.sim_steps, "cells": len(rows),
            "healthy_steps": steps, "false_rollbacks": false,
            "false_rollback_rate": round(false / steps, 5) if steps else None,
            "bad_cells": len(bad),
            "bad_steps": sum(r["steps"] for r in bad),
            "bad_rolled_back": sum(r["rollbacks"] for r in bad)}
