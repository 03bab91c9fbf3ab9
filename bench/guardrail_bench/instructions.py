"""Scenario 2, instructions per request counted by valgrind's callgrind: repeatable on
a loaded, shared machine where seconds are noise, so the figure to track regressions.

Each process under test runs alone under valgrind with one worker. A warm-up (pools,
TLS handshakes, lazy statics) is sent first and the counters are zeroed with
`callgrind_control -z`; the totals written at exit then cover the measured requests
and a small constant for the shutdown."""

from __future__ import annotations

import subprocess
from dataclasses import replace

from . import sidecar, webhook
from .load import Load, run as oha_run
from .procs import BenchError, Processes, free_port

CONNECTIONS = 8


def count(ctx, procs: Processes, name: str, cmd: list[str], port: int, request: Load,
          env=None) -> dict:
    out = ctx.out / "callgrind" / f"{name}.out"
    out.parent.mkdir(exist_ok=True)
    proc = procs.start(f"callgrind-{name}", [
        ctx.tools["valgrind"], "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        port, env=env, timeout=300)
    n, warmup = ctx.mode.instruction_requests, ctx.mode.instruction_warmup
    request = replace(request, connections=CONNECTIONS)
    oha_run(ctx.oha, replace(request, count=warmup))
    subprocess.run([ctx.tools["callgrind_control"], "-z", str(proc.popen.pid)], check=True,
                   capture_output=True)
    result = oha_run(ctx.oha, replace(request, count=n))
    code = proc.stop(timeout=120)
    totals = None
    for line in out.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            totals = int(line.split()[1])
            break
    if totals is None:
        raise BenchError(f"callgrind wrote no totals for {name} (exit {code}): {proc.tail()}")
    per = round(totals / result.requests)
    ctx.say(f"  {name:<22} {per:>9} instructions/request (n={result.requests})")
    return {"scenario": "instructions", "target": name, "requests": result.requests,
            "instructions": totals, "instructions_per_request": per, "profile": str(out)}


def run(ctx) -> list[dict]:
    ctx.say("instructions per request (callgrind)")
    rows = []
    work = ctx.work / "instructions"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    sidecar.write_bodies(work)
    env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    with Processes(ctx.logs) as procs:
        up = free_port()
        (work / "upstream.conf").write_text(sidecar.nginx_upstream(work, up))
        procs.start("callgrind-upstream", [ctx.tools["nginx"], "-c", str(work / "upstream.conf"),
                                           "-g", "daemon off;"], up)
        def get(port, path=sidecar.PATH):
            return Load(f"http://127.0.0.1:{port}{path}", 0, 0)
        port = free_port()
        rows.append(count(ctx, procs, "sidecar", sidecar.sidecar_cmd(
            ctx, port, free_port(), up, {"sanity": {"maxBodyBytes": 0}}), port, get(port), env))
        # Checks on, one process per protocol so each total is that protocol's alone.
        for name, path, _, _ in sidecar.PROTOCOLS:
            port = free_port()
            rows.append(count(ctx, procs, name, sidecar.sidecar_cmd(
                ctx, port, free_port(), up, {}), port, get(port, path), env))
        port = free_port()
        (work / "proxy.conf").write_text(sidecar.nginx_proxy(work, port, up, 1, master=False))
        rows.append(count(ctx, procs, "nginx", [ctx.tools["nginx"], "-c",
                                                str(work / "proxy.conf"), "-g", "daemon off;"],
                          port, get(port)))

    hook = ctx.work / "webhook"
    if (hook / "answer.json").exists():
        tls = ["--tls-cert", str(hook / "tls.crt"), "--tls-key", str(hook / "tls.key")]
        body = hook / "review.json"
        with Processes(ctx.logs) as procs:
            port = free_port()
            rows.append(count(ctx, procs, "webhook", [
                str(ctx.bins["guardrail-webhook"]), "serve", "--listen", f"127.0.0.1:{port}",
                "--metrics-listen", f"127.0.0.1:{free_port()}", *tls], port,
                webhook.post(port, body), env))
            port = free_port()
            rows.append(count(ctx, procs, "axum+rustls floor", [
                str(ctx.bins["tls_floor"]), "--listen", f"127.0.0.1:{port}",
                "--body", str(hook / "answer.json"), *tls], port, webhook.post(port, body), env))
    return rows


def summarise(rows: list[dict], mode=None) -> dict:
    per = {r["target"]: r["instructions_per_request"] for r in rows}
    ratios = {}
    if "sidecar" in per and "nginx" in per:
        ratios["sidecar/nginx"] = round(per["sidecar"] / per["nginx"], 3)
    for name in sidecar.CHECKED:
        if name in per and "nginx" in per:
            ratios[f"{name}/nginx"] = round(per[name] / per["nginx"], 3)
    if "webhook" in per and "axum+rustls floor" in per:
        ratios["webhook/axum floor"] = round(per["webhook"] / per["axum+rustls floor"], 3)
    return {"instructions_per_request": per, "ratios": ratios}
