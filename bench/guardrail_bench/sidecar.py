"""Scenario 1, the sidecar's data path, against real proxies on loopback.

A static nginx serves 1 KB answers (the "model"): KServe V1 JSON, Open Inference
Protocol v2 JSON and an OpenAI chat-completion SSE stream, each on its protocol's path.
In front of it, at equal worker counts: the sidecar with its sanity checks off (proxying
alone), nginx `proxy_pass` with upstream keep-alive and HAProxy with connection reuse
(on the V1 path), and the sidecar with its default checks on, once per protocol (the
checks are chosen from the path). The direct path is the baseline of every added
latency; nginx's cost is that of 1 KB whatever the protocol, so each checked protocol's
CPU is compared with it.
"""

from __future__ import annotations

import json
import urllib.request

from . import measure
from .load import Load
from .procs import BenchError, Processes, free_port

PATH = "/v1/models/bench:predict"
# Each checked protocol: its target name, path, answer file and content type.
PROTOCOLS = [("sidecar+sanity", PATH, "body.json", "application/json"),
             ("sidecar+sanity v2", "/v2/models/bench/infer", "body-v2.json", "application/json"),
             ("sidecar+sanity sse", "/v1/chat/completions", "body-sse.txt",
              "text/event-stream")]
CHECKED = [p[0] for p in PROTOCOLS]  # the sidecar with its checks on, once per protocol


def pad(text: str, size: int = 1024) -> str:
    if len(text) > size:
        raise ValueError(f"answer of {len(text)} bytes is over {size}")
    return text + " " * (size - len(text))


def body_1k() -> str:
    """A KServe V1 answer the sanity checks read, padded to 1024 bytes."""
    return pad(json.dumps({"predictions": [[0.125, 0.875]] * 40, "model_name": "bench"}))


def body_v2_1k() -> str:
    """An OIP v2 answer (70 × 2 FP32 probabilities, its shape matching), 1024 bytes."""
    return pad(json.dumps({"model_name": "bench", "id": "1", "outputs": [
        {"name": "probabilities", "shape": [70, 2], "datatype": "FP32",
         "data": [0.125, 0.875] * 70}]}, separators=(",", ":")))


def sse_chunk(delta: dict, finish: str | None = None) -> str:
    """One event of an OpenAI chat completion streamed as Server-Sent Events."""
    return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": delta,
                                               "finish_reason": finish}]},
                                 separators=(",", ":")) + "\n\n"


def sse_events(words: list[str]) -> list[str]:
    """A chat completion streamed as a chunk per word, a final chunk with
    `finish_reason: stop`, then `[DONE]`."""
    return [sse_chunk({"content": w}) for w in words] + [sse_chunk({}, "stop") +
                                                         "data: [DONE]\n\n"]


def body_sse_1k() -> str:
    """A streamed chat completion of 1024 bytes (the padding is an SSE comment)."""
    text = "".join(sse_events(["The", " model", " answers", " in", " plain", " words", "."]))
    return pad(": " + "x" * (1024 - len(text) - 4) + "\n\n" + text)


def write_bodies(work) -> None:
    """Each protocol's answer, where the upstream nginx serves it from."""
    for (_, _, file, _), body in zip(PROTOCOLS, [body_1k(), body_v2_1k(), body_sse_1k()]):
        measure.write_body(work / file, body)


def nginx_upstream(work, port) -> str:
    """The model: each protocol's answer on its path."""
    locations = "".join(f"    location = {path} {{ default_type {kind}; "
                        f"try_files /{file} =404; }}\n" for _, path, file, kind in PROTOCOLS)
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
{locations}  }}
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
    # The default checks, chosen from the path: what a user runs.
    checked = procs.start(f"sidecar-sanity-w{workers}",
                          sidecar_cmd(ctx, port, admin, up, {}), port, env=env)
    checked.admin = admin
    for name, path, _, _ in PROTOCOLS:
        targets.append(measure.Target(name, Load(f"http://127.0.0.1:{port}{path}", 0, 0),
                                      checked))
    return targets


def require_sane(proc, answered: int, what: str) -> dict[str, float]:
    """The checked sidecar's own count of checked, unchecked and failed responses,
    which must have checked every one of the `answered` and failed none: a failing
    check would time the failure path, an unchecked answer no check at all."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts = {"checked": 0.0, "unchecked": 0.0, "failed": 0.0}
    names = {"guardrail_sanity_checked_total": "checked",
             "guardrail_sanity_unchecked_total": "unchecked",
             "guardrail_sanity_failures_total": "failed"}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            counts[names[name]] += float(line.rsplit(" ", 1)[1])
    if counts["failed"] or counts["checked"] < answered:
        raise BenchError(f"{what}: {counts} for {answered} answers; its log is {proc.log}")
    return {"answered": answered, **counts}


def run(ctx) -> list[dict]:
    work = ctx.work / "sidecar"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    write_bodies(work)
    rows = []
    for workers in ctx.mode.workers:
        ctx.say(f"sidecar data path, {workers} worker(s) each")
        with Processes(ctx.logs) as procs:
            targets = start_proxies(ctx, procs, workers, work)
            plan = measure.Plan(rates=ctx.mode.rates + [None],
                                repetitions=ctx.mode.repetitions, seconds=ctx.mode.seconds,
                                connections=64,
                                labels={"scenario": "sidecar", "workers": workers})
            measured = measure.run(ctx.oha, targets, plan, ctx.say)
            counts = require_sane(targets[-1].proc,
                                  sum(r["requests"] for r in measured if r["target"] in CHECKED),
                                  f"sidecar with checks, {workers} worker(s)")
            rows += measured + [{"scenario": "sidecar-sanity-counts", "workers": workers,
                                 **counts}]
    return rows


PROXIES = ["sidecar", "nginx", "haproxy"] + CHECKED


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
                for a, b in [("sidecar", "nginx"), ("sidecar", "haproxy")]
                + [(name, "nginx") for name in CHECKED]
                for m, key in [("cpu", "cpu_s_per_1000"), ("rps", "rps")]
            }
            per_rate["saturation" if rate is None else str(rate)] = entry
        out[f"workers={workers}"] = per_rate
    return out
