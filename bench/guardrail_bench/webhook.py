"""Scenario 3, the webhook's `/validate` over TLS with keep-alive, against two floors on
the same machine, certificate and TLS stack: nginx answering a constant AdmissionReview
(`return 200`, nothing parsed) and `tls_floor`, our own listener, rustls and hyper
answering the same constant. The review is the ~6 KB pod Knative builds for
examples/good/knative-service.yaml (webhook/tests/data/knative-revision-pod.yaml), as
the criterion bench of the engine's decision uses."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request

import yaml

from . import measure
from .load import Load
from .procs import BenchError, Processes, free_port


def review(root) -> bytes:
    pod = yaml.safe_load((root / "webhook/tests/data/knative-revision-pod.yaml").read_text())
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ml-serving",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
        },
    }).encode()


def nginx_floor(work, port, workers, answer: str) -> str:
    # nginx's single-quoted strings take \' and \\; `$` would start a variable.
    if "$" in answer:
        raise BenchError("the webhook's answer holds '$', which nginx's return would expand")
    quoted = answer.replace("\\", "\\\\").replace("'", "\\'")
    return f"""
worker_processes {workers};
pid {work}/floor.pid;
error_log {work}/floor-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_max_body_size 8m;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {work}/tls.crt;
    ssl_certificate_key {work}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ default_type application/json; return 200 '{quoted}'; }}
  }}
}}
"""


def first_answer(port: int, ca, body: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    request = urllib.request.Request(f"https://127.0.0.1:{port}/validate", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        return answer.read()


def run(ctx) -> list[dict]:
    work = ctx.work / "webhook"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    webhook = str(ctx.bins["guardrail-webhook"])
    subprocess.run([webhook, "certs", "generate", "--service", "guardrail", "--namespace",
                    "bench", "--out", str(work), "--force"], check=True, capture_output=True)
    for f in ["tls.crt", "tls.key"]:
        (work / f).chmod(0o644)  # read by nginx's unprivileged workers
    body = measure.write_body(work / "review.json", review(ctx.root).decode())
    tls = ["--tls-cert", str(work / "tls.crt"), "--tls-key", str(work / "tls.key")]
    rows = []
    for workers in ctx.mode.workers:
        ctx.say(f"webhook /validate over TLS, {workers} worker(s) each")
        env = {"TOKIO_WORKER_THREADS": str(workers), "RUST_LOG": "warn"}
        with Processes(ctx.logs) as procs:
            port, metrics = free_port(), free_port()
            hook = procs.start(f"webhook-w{workers}", [
                webhook, "serve", "--listen", f"127.0.0.1:{port}",
                "--metrics-listen", f"127.0.0.1:{metrics}", *tls], port, env=env)
            answer = first_answer(port, work / "ca.crt", body.read_bytes())
            if b'"allowed":true' not in answer.replace(b" ", b""):
                raise BenchError(f"the webhook did not allow the benchmark review: {answer!r}")
            (work / "answer.json").write_bytes(answer)
            targets = [measure.Target("webhook", post(port, body), hook)]

            port = free_port()
            floor = procs.start(f"tls-floor-w{workers}", [
                str(ctx.bins["tls_floor"]), "--listen", f"127.0.0.1:{port}",
                "--body", str(work / "answer.json"), *tls], port, env=env)
            targets.append(measure.Target("axum+rustls floor", post(port, body), floor))

            port = free_port()
            (work / f"floor-w{workers}.conf").write_text(
                nginx_floor(work, port, workers, answer.decode()))
            nginx = procs.start(f"nginx-floor-w{workers}", [
                ctx.tools["nginx"], "-c", str(work / f"floor-w{workers}.conf"),
                "-g", "daemon off;"], port)
            targets.append(measure.Target("nginx floor", post(port, body), nginx))

            plan = measure.Plan(rates=ctx.mode.webhook_rates + [None],
                                repetitions=ctx.mode.repetitions, seconds=ctx.mode.seconds,
                                connections=8,
                                labels={"scenario": "webhook", "workers": workers})
            rows += measure.run(ctx.oha, targets, plan, ctx.say)
    return rows


def post(port: int, body) -> Load:
    return Load(f"https://127.0.0.1:{port}/validate", 0, 0, method="POST", body=body,
                headers=["Content-Type: application/json"], insecure=True)


TARGETS = ["webhook", "axum+rustls floor", "nginx floor"]


def summarise(rows: list[dict], mode) -> dict:
    out = {}
    for workers in mode.workers:
        per_rate = {}
        for rate in mode.webhook_rates + [None]:
            at = {"scenario": "webhook", "workers": workers, "rate": rate}
            entry = {"targets": {
                t: {"rps": measure.summary(rows, "rps", target=t, **at),
                    "latency_p50_ms": measure.summary(rows, "latency_ms.p50", target=t, **at),
                    "latency_p99_ms": measure.summary(rows, "latency_ms.p99", target=t, **at),
                    "cpu_us_per_request": measure.summary(rows, "cpu_us_per_request",
                                                          target=t, **at),
                    "peak_rss_mib": measure.summary(rows, "peak_rss_mib", target=t, **at)}
                for t in TARGETS}}
            entry["paired"] = {
                "webhook − nginx floor cpu µs": measure.paired(
                    rows, "webhook", "nginx floor", "cpu_us_per_request", "difference", **at),
                "webhook − axum floor cpu µs": measure.paired(
                    rows, "webhook", "axum+rustls floor", "cpu_us_per_request", "difference",
                    **at),
                "webhook/axum floor rps": measure.paired(
                    rows, "webhook", "axum+rustls floor", "rps", "ratio", **at),
                "webhook/nginx floor rps": measure.paired(
                    rows, "webhook", "nginx floor", "rps", "ratio", **at),
            }
            per_rate["saturation" if rate is None else str(rate)] = entry
        out[f"workers={workers}"] = per_rate
    return out
