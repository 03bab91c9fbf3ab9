"""Scenario 3b, signature verification: cold (every check goes to the registry) and
warm (cached) latency of each kind of signature — legacy cosign `.sig` with a key and
keyless, cosign v3 bundles with a key and keyless, made by sigstore-js and attached as
OCI referrers through the tag schema — against a local `docker-registry` on loopback,
and the throughput of cached checks. The `signatures_latency` example (tests/e2e) does
the signing and timing in-process, one run per repetition; this module runs it and
summarises the repetitions."""

from __future__ import annotations

import json
import os
import subprocess
import time

from .measure import spread
from .procs import BenchError

KINDS = ["cold key .sig", "cold keyless .sig", "cold key v3 bundle", "cold keyless v3 bundle",
         "warm"]
PERCENTILES = ["p50_us", "p90_us", "p99_us", "max_us"]


def run(ctx) -> list[dict]:
    example = ctx.bins["signatures_latency"]
    env = {**os.environ, "GUARDRAIL_REGISTRY_BIN": ctx.tools["docker-registry"],
           "GUARDRAIL_HTPASSWD_BIN": ctx.tools["htpasswd"],
           "GUARDRAIL_SIGSTORE_JS": ctx.tools["sigstore-js"]}
    rows = []
    for rep in range(ctx.mode.repetitions):
        out = ctx.work / f"signatures-{rep}.json"
        started = time.monotonic()
        with open(ctx.logs / f"signatures-{rep}.log", "w") as log:
            done = subprocess.run([str(example), "--cold", str(ctx.mode.signature_cold),
                                   "--warm", str(ctx.mode.signature_warm), "--checks",
                                   str(ctx.mode.signature_checks), "--json", str(out)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env,
                                  cwd=ctx.work, timeout=900)
        if done.returncode != 0:
            tail = (ctx.logs / f"signatures-{rep}.log").read_text()[-1500:]
            raise BenchError(f"{example} failed ({done.returncode}):\n{tail}")
        result = json.loads(out.read_text())
        ctx.say(f"  signatures rep {rep} ({time.monotonic() - started:.0f} s): " + ", ".join(
            f"{k} p99 {result['kinds'][k]['p99_us']:.0f} µs" for k in KINDS))
        rows.append({"scenario": "signatures", "target": "signatures_latency", "rep": rep,
                     **result})
    return rows


def summarise(rows: list[dict], mode) -> dict:
    """Each kind's percentiles in milliseconds (µs for the warm check), as the median
    (min–max) over the repetitions."""
    kinds = {}
    for kind in KINDS:
        scale = 1.0 if kind == "warm" else 1000.0
        unit = "us" if kind == "warm" else "ms"
        kinds[kind] = {f"{p[:-3]}_{unit}": spread([r["kinds"][kind][p] / scale for r in rows])
                       for p in PERCENTILES}
        kinds[kind]["checks"] = rows[0]["kinds"][kind]["n"] if rows else 0
    return {"kinds": kinds,
            "registry_requests_per_cold_check": {
                k: spread([r["registry_requests_per_cold_check"][k] for r in rows])
                for k in (rows[0]["registry_requests_per_cold_check"] if rows else {})},
            "cached_checks_per_s": spread([r["cached_checks_per_s"] for r in rows])}
