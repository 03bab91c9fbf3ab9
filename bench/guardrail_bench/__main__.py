"""bench/run: every benchmark of BENCHMARKS.md in one command."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import (instructions, judgement, report, scale, sidecar, signatures, streaming,
               webhook)
from .procs import BenchError

ROOT = Path(__file__).resolve().parents[2]
OHA_VERSION = "1.16.0"
SCENARIOS = ["sidecar", "streaming", "webhook", "signatures", "instructions", "scale",
             "judgement"]
# Each scenario's module: run(ctx) -> rows, summarise(rows, mode) -> summary.
MODULES = {"sidecar": sidecar, "streaming": streaming, "webhook": webhook, "signatures": signatures,
           "instructions": instructions, "scale": scale, "judgement": judgement}


@dataclass
class Mode:
    name: str
    rates: list[int]  # fixed rates of the sidecar scenario (saturation is added)
    webhook_rates: list[int]
    workers: list[int]
    repetitions: int
    seconds: float
    instruction_requests: int
    instruction_warmup: int
    scale_rate: int = 200
    connection_rate: int = 1000
    scale_containers: list[int] = field(default_factory=lambda: [1, 5, 20, 50])
    scale_rules: list[int] = field(default_factory=lambda: [1, 100, 1000])
    scale_connections: list[int] = field(default_factory=lambda: [10, 100, 1000, 10000])
    sim_grid: str = "quick"
    sim_steps: int = 1000
    # Signature checks per kind and repetition: cold (registry round-trips), warm
    # (cached), and cached checks for the throughput figure.
    signature_cold: int = 300
    signature_warm: int = 20000
    signature_checks: int = 50000
    sse_streams: int = 500  # streams per path and repetition (streaming scenario)


MODES = {
    # The suite's: seconds, on the debug binaries, so the harness cannot rot.
    "smoke": Mode("smoke", [200], [100], [1], 1, 1.0, 200, 50, scale_rate=100,
                  connection_rate=100, scale_containers=[1, 5], scale_rules=[10],
                  scale_connections=[10, 100], sim_steps=5, signature_cold=3,
                  signature_warm=100, signature_checks=1000, sse_streams=20),
    "quick": Mode("quick", [1000, 2000], [1000], [1], 5, 3.0, 5000, 500, signature_cold=100,
                  signature_warm=5000, signature_checks=20000, sse_streams=200),
    "full": Mode("full", [500, 1000, 2000, 5000], [1000], [1, 2], 5, 10.0, 20000, 1000,
                 sim_grid="full"),
}


@dataclass
class Context:
    root: Path
    out: Path
    work: Path
    logs: Path
    mode: Mode
    oha: str
    bins: dict[str, Path]
    tools: dict[str, str] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(text, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache/guardrail"))


def find_oha(install: bool) -> str:
    """oha from $OHA, the PATH, or the cache, else `cargo install`ed (pinned) into the
    cache once."""
    for candidate in [os.environ.get("OHA"), shutil.which("oha"),
                      str(cache_dir() / "tools/oha/bin/oha")]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if not install:
        raise BenchError("oha is missing: cargo install oha (or drop --no-install)")
    print(f"installing oha {OHA_VERSION} from crates.io (once, into {cache_dir()})", flush=True)
    subprocess.run(["cargo", "install", "oha", "--locked", "--version", OHA_VERSION,
                    "--root", str(cache_dir() / "tools/oha")], check=True)
    return str(cache_dir() / "tools/oha/bin/oha")


DEBIAN = {"nginx": "nginx-light", "haproxy": "haproxy", "valgrind": "valgrind",
          "callgrind_control": "valgrind", "docker-registry": "docker-registry",
          "htpasswd": "apache2-utils"}


def find_tools(names: list[str], install: bool) -> dict[str, str]:
    missing = [n for n in names if not shutil.which(n)]
    if missing and install:
        packages = sorted({DEBIAN[n] for n in missing})
        if os.geteuid() != 0:
            raise BenchError(f"{', '.join(missing)} missing: sudo apt-get install "
                             f"{' '.join(packages)}")
        print(f"apt-get install {' '.join(packages)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        *packages], check=True, env=env)
    tools = {}
    for n in names:
        path = shutil.which(n)
        if not path:
            raise BenchError(f"{n} missing: apt-get install {DEBIAN[n]}")
        tools[n] = path
    return tools


def find_sigstore_js(install: bool) -> str:
    """sigstore-js's node_modules, the signer of the v3 bundles: $GUARDRAIL_SIGSTORE_JS,
    else what the suite's own installer (tests/setup/sigstore-js.sh, pinned by
    tests/e2e/signers/package.json, idempotent) puts in the cache."""
    if os.environ.get("GUARDRAIL_SIGSTORE_JS"):
        return os.environ["GUARDRAIL_SIGSTORE_JS"]
    modules = cache_dir() / "sigstore-js/node_modules"
    if not install:
        if not (modules / "@sigstore/oci").is_dir():
            raise BenchError(f"sigstore-js is missing from {modules}: drop --no-install")
        return str(modules)
    # The script asks tests/run.sh's helpers for logging and for Debian packages (npm).
    script = ('log() { echo "bench/run: $*" >&2; }; '
              'apt_need() { echo "bench/run: missing $*: install Node.js and npm" >&2; exit 1; }; '
              '. tests/setup/sigstore-js.sh && echo "$GUARDRAIL_SIGSTORE_JS"')
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "GUARDRAIL_CACHE": str(cache_dir())})
    if done.returncode != 0:
        raise BenchError("tests/setup/sigstore-js.sh failed: see above")
    return done.stdout.strip().splitlines()[-1]


def binaries(bin_dir: Path | None) -> dict[str, Path]:
    """Release builds unless --bin-dir names a folder of built ones (the suite passes
    target/debug, which it has built already)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if bin_dir is None:
        print("cargo build --release (sidecar, guardrail-sim, webhook, tls_floor, "
              "signatures_latency)", flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "guardrail-sidecar", "-p",
                        "guardrail-webhook", "--bins", "--example", "tls_floor", "-p",
                        "guardrail-e2e", "--example", "signatures_latency"],
                       check=True, cwd=ROOT)
        bin_dir = target / "release"
    bin_dir = bin_dir.resolve()  # scenarios run some of them from their own folders
    bins = {"guardrail-sidecar": bin_dir / "guardrail-sidecar",
            "guardrail-sim": bin_dir / "guardrail-sim",
            "guardrail-webhook": bin_dir / "guardrail-webhook",
            "tls_floor": bin_dir / "examples" / "tls_floor",
            "signatures_latency": bin_dir / "examples" / "signatures_latency"}
    examples = {"tls_floor": "guardrail-webhook", "signatures_latency": "guardrail-e2e"}
    for name, path in bins.items():
        if not path.exists():
            how = (f"cargo build -p {examples[name]} --example {name}" if name in examples
                   else "cargo build --workspace --bins")
            raise BenchError(f"{path} is missing: {how}")
    return bins


def version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def environment(ctx: Context, bin_dir: Path | None) -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = version(["git", "-C", str(ROOT), "status", "--porcelain"])
    tools = {"oha": version([ctx.oha, "--version"]).split()[-1],
             "nginx": version([ctx.tools["nginx"], "-v"]).split("/")[-1] if "nginx" in ctx.tools
             else "?",
             "haproxy": version([ctx.tools["haproxy"], "-v"]).split()[2]
             if "haproxy" in ctx.tools else "?"}
    if "docker-registry" in ctx.tools:
        tools["docker-registry"] = version([ctx.tools["docker-registry"], "--version"]).split()[-1]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "commit": commit + ("+dirty" if dirty not in ("", "?") else ""),
            "profile": "debug" if bin_dir and "debug" in str(bin_dir) else "release",
            "tools": tools}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="a few minutes")
    group.add_argument("--smoke", action="store_true",
                       help="seconds, to prove the harness works (the suite runs it)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--bin-dir", type=Path,
                        help="use the binaries in this folder instead of a release build")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/<time>)")
    parser.add_argument("--repetitions", type=int, help="override the mode's repetitions")
    parser.add_argument("--seconds", type=float, help="override the mode's seconds per run")
    parser.add_argument("--workers", help="override the mode's worker counts, e.g. 1,2")
    parser.add_argument("--setup", action="store_true",
                        help="install what the benchmarks need (oha, nginx, haproxy, "
                             "valgrind, docker-registry, sigstore-js, the plotting venv), "
                             "then exit")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of installing a missing tool")
    args = parser.parse_args(argv)
    if args.setup:
        find_oha(True)
        find_tools(list(DEBIAN), True)
        find_sigstore_js(True)
        return 0
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repetitions:
        mode.repetitions = args.repetitions
    if args.seconds:
        mode.seconds = args.seconds
    if args.workers:
        mode.workers = [int(w) for w in args.workers.split(",")]
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}: choose from {SCENARIOS}")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or ROOT / "bench/results" / f"{mode.name}-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    install = not args.no_install
    # Thousands of connections, and the proxies' own fds: the hard limit, as for a server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = ["nginx"]
    need += ["haproxy"] if "sidecar" in chosen else []
    need += ["valgrind", "callgrind_control"] if "instructions" in chosen else []
    need += ["docker-registry", "htpasswd"] if "signatures" in chosen else []
    if "scale" in chosen and "webhook" not in chosen:
        parser.error("the scale scenario needs the webhook scenario (its certificate)")
    with tempfile.TemporaryDirectory(prefix="guardrail-bench-") as work:
        ctx = Context(root=ROOT, out=out, work=Path(work), logs=out / "logs", mode=mode,
                      oha=find_oha(install), bins=binaries(args.bin_dir),
                      tools=find_tools(need, install))
        if "signatures" in chosen:
            ctx.tools["sigstore-js"] = find_sigstore_js(install)
        Path(work).chmod(0o755)
        ctx.logs.mkdir(exist_ok=True)
        results = {"mode": mode.name, "mode_settings": mode.__dict__,
                   "environment": environment(ctx, args.bin_dir), "samples": [], "summary": {}}
        # In SCENARIOS order: the webhook scenario writes the certificate, review and
        # answer the instructions scenario (which skips them otherwise) and the scale
        # scenario (which needs them) use.
        for name in [s for s in SCENARIOS if s in chosen]:
            scenario = MODULES[name]
            rows = scenario.run(ctx)
            results["samples"] += rows
            results["summary"][name] = scenario.summarise(rows, mode)
        report.write(results, mode, out)
    print(f"\nresults: {out}/results.md", flush=True)
    print((out / "results.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"bench/run: {e}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"bench/run: {' '.join(map(str, e.cmd))} failed with {e.returncode}",
              file=sys.stderr)
        sys.exit(1)
