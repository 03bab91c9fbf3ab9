"""Scenario 1, the sidecar's data path, against real proxies on loopback.

A static nginx serves a 1 KB KServe V1 JSON answer (the "model"). In front of it, at
equal worker counts: the sidecar with its sanity checks off (proxying alone), nginx
`proxy_pass` with upstream keep-alive, HAProxy with connection reuse, and the sidecar
with its default checks on. The direct path is the baseline of every added latency.
"""

from __future__ import annotations

import json

from . import measure
from .load import Load
from .procs import Processes, free_port

PATH = "/v1/models/bench:predict"


def body_1k() -> str:
    """A KServe V1 answer the sanity checks read, padded to 1024 bytes."""
    text = json.dumps({"predictions": [[0.125, 0.875]] * 40, "model_name": "bench"})
    return text + " " * (1024 - len(text))


def nginx_upstream(work, port) -> str:
    return f"""
worker_processes 1;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    root {work};
    location / {{ default_type application/json; try_files /body.json =404; }}
  }}
}}
"""


def nginx_proxy(work, port, upstream, workers, master=True) -> str:
    return f"""
worker_processes {workers};
{'' if master else 'master_process off;'}
pid {work}/proxy-{port}.pid;
error_log {work}/proxy-{port}-error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream model {{ server 127.0.0.1:{upstream}; keepalive 128; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def haproxy(port, upstream, workers) -> str:
    return f"""
global
  nbthread {workers}
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend bench
  bind 127.0.0.1:{port}
  default_backend model
backend model
  server model 127.0.0.1:{upstream} maxconn 4000
"""


def sidecar_cmd(ctx, port, admin, upstream, config) -> list[str]:
    return [str(ctx.bins["guardrail-sidecar"]), "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}", "--upstream", f"http://127.0.0.1:{upstream}",
            "--measure-only", "--config-text", json.dumps(config)]


def start_proxies(ctx, procs: Processes, workers: int, work) -> list[measure.Target]:
    """The direct path and every proxy in front of one upstream, at `workers` each."""
    up = free_port()
    (work / "upstream.conf").write_text(nginx_upstream(work, up))
    procs.start("upstream-nginx", [ctx.tools["nginx"], "-c", str(work / "upstream.conf"),
                                   "-g", "daemon off;"], up)
    env = {"TOKIO_WORKER_THREADS": str(workers), "RUST_LOG": "warn"}
    targets = [measure.Target("direct", Load(f"http://127.0.0.1:{up}{PATH}", 0, 0))]

    port, admin = free_port(), free_port()
    # Sanity checks off: the sidecar proxying alone, the comparison with nginx.
    sidecar = procs.start(f"sidecar-w{workers}",
                          sidecar_cmd(ctx, port, admin, up, {"sanity": {"maxBodyBytes": 0}}),
                          port, env=env)
    targets.append(measure.Target("sidecar", Load(f"http://127.0.0.1:{port}{PATH}", 0, 0),
                                  sidecar))

    port = free_port()
    (work / f"proxy-w{workers}.conf").write_text(nginx_proxy(work, port, up, workers))
    nginx = procs.start(f"nginx-w{workers}", [ctx.tools["nginx"], "-c",
                                              str(work / f"proxy-w{workers}.conf"),
                                              "-g", "daemon off;"], port)
    targets.append(measure.Target("nginx", Load(f"http://127.0.0.1:{port}{PATH}", 0, 0), nginx))

    port = free_port()
    (work / f"haproxy-w{workers}.cfg").write_text(haproxy(port, up, workers))
    ha = procs.start(f"haproxy-w{workers}", [ctx.tools["haproxy"], "-db", "-f",
                                             str(work / f"haproxy-w{workers}.cfg")], port)
    targets.append(measure.Target("haproxy", Load(f"http://127.0.0.1:{port}{PATH}", 0, 0), ha))

    port, admin = free_port(), free_port()
    # The default checks (KServe V1 by path): what a user runs.
    checked = procs.start(f"sidecar-sanity-w{workers}",
                          sidecar_cmd(ctx, port, admin, up, {}), port, env=env)
    targets.append(measure.Target("sidecar+sanity",
                                  Load(f"http://127.0.0.1:{port}{PATH}", 0, 0), checked))
    return targets


def run(ctx) -> list[dict]:
    work = ctx.work / "sidecar"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    measure.write_body(work / "body.json", body_1k())
    rows = []
    for workers in ctx.mode.workers:
        ctx.say(f"sidecar data path, {workers} worker(s) each")
        with Processes(ctx.logs) as procs:
            targets = start_proxies(ctx, procs, workers, work)
            plan = measure.Plan(rates=ctx.mode.rates + [None],
                                repetitions=ctx.mode.repetitions, seconds=ctx.mode.seconds,
                                connections=64,
                                labels={"scenario": "sidecar", "workers": workers})
            rows += measure.run(ctx.oha, targets, plan, ctx.say)
    return rows


PROXIES = ["sidecar", "nginx", "haproxy", "sidecar+sanity"]


def summarise(rows: list[dict], mode) -> dict:
    out = {}
    for workers in mode.workers:
        w = {"scenario": "sidecar", "workers": workers}
        per_rate = {}
        for rate in mode.rates + [None]:
            at = {**w, "rate": rate}
            entry = {"targets": {}}
            for target in ["direct"] + PROXIES:
                t = {"rps": measure.summary(rows, "rps", target=target, **at)}
                for p in ["p50", "p90", "p99", "p999"]:
                    t[f"latency_{p}_ms"] = measure.summary(rows, f"latency_ms.{p}",
                                                           target=target, **at)
                if target != "direct":
                    # Added latency only at fixed rates: at saturation each path runs at
                    # its own rate, so a difference of latencies compares nothing.
                    for p in ["p50", "p90", "p99", "p999"] if rate is not None else []:
                        t[f"added_{p}_ms"] = measure.paired(rows, target, "direct",
                                                            f"latency_ms.{p}", "difference", **at)
                    for p in ["p50", "p90", "p99", "p999"] if rate is None else []:
                        t[f"added_{p}_ms"] = None
                    t["cpu_s_per_1000"] = measure.summary(rows, "cpu_s_per_1000",
                                                          target=target, **at)
                    t["peak_rss_mib"] = measure.summary(rows, "peak_rss_mib", target=target, **at)
                entry["targets"][target] = t
            entry["ratios"] = {
                f"{a}/{b} {m}": measure.paired(rows, a, b, key, "ratio", **at)
                for a, b in [("sidecar", "nginx"), ("sidecar", "haproxy"),
                             ("sidecar+sanity", "nginx")]
                for m, key in [("cpu", "cpu_s_per_1000"), ("rps", "rps")]
            }
            per_rate["saturation" if rate is None else str(rate)] = entry
        out[f"workers={workers}"] = per_rate
    return out
