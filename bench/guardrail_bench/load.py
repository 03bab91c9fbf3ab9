"""Load from oha (crates.io): open-loop fixed rates with latency correction (so a stall
counts against every request it delayed, not just one), or closed-loop saturation."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .procs import BenchError

PERCENTILES = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p999"}


@dataclass
class Load:
    """One oha run: what to send and how hard."""
    url: str
    seconds: float
    connections: int
    rate: int | None = None  # None: as fast as the target answers
    method: str = "GET"
    body: Path | None = None
    headers: list[str] = field(default_factory=list)
    insecure: bool = False
    count: int | None = None  # a number of requests instead of a duration


@dataclass
class Result:
    requests: int
    rps: float
    latency_ms: dict[str, float]  # p50, p90, p99, p999

    def as_dict(self) -> dict:
        return {"requests": self.requests, "rps": self.rps, "latency_ms": self.latency_ms}


def run(oha: str, load: Load) -> Result:
    cmd = [oha, "--no-tui", "--output-format", "json", "-c", str(load.connections),
           "-m", load.method]
    cmd += ["-n", str(load.count)] if load.count else ["-z", f"{load.seconds}s"]
    if load.rate is not None:
        cmd += ["-q", str(load.rate), "--latency-correction"]
    if load.body is not None:
        cmd += ["-D", str(load.body)]
    for header in load.headers:
        cmd += ["-H", header]
    if load.insecure:
        cmd.append("--insecure")
    cmd.append(load.url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=load.seconds + 600)
    if done.returncode != 0:
        raise BenchError(f"oha failed ({done.returncode}) against {load.url}: "
                         f"{done.stderr.strip()[-500:]}")
    return parse(done.stdout, load.url)


def parse(text: str, url: str) -> Result:
    """Reads oha's JSON; any answer but 200 or any connection error fails the run (a
    benchmark of error pages measures nothing)."""
    data = json.loads(text)
    codes = data.get("statusCodeDistribution") or {}
    bad = {k: v for k, v in codes.items() if k != "200"}
    errors = data.get("errorDistribution") or {}
    # oha counts requests cut off by the end of the run as errors: not the target's fault.
    errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
    if bad or errors:
        raise BenchError(f"{url}: non-200 answers {bad} or errors {errors}: fix the setup "
                         "(the target's log is in the results folder)")
    ok = int(codes.get("200", 0))
    if ok == 0:
        raise BenchError(f"{url}: no request was answered")
    pct = data["latencyPercentiles"]
    latency = {ours: round(pct[theirs] * 1e3, 4) for theirs, ours in PERCENTILES.items()}
    return Result(requests=ok, rps=round(data["summary"]["requestsPerSec"], 1),
                  latency_ms=latency)
