"""Scenario 4, the scale of cost: the webhook's latency and CPU per review as the
containers of a pod grow and as signature rules grow, and the sidecar's memory and p99
as concurrent connections grow. Each webhook point is its own server, measured in the
same rotation as the other points; the connection points share one sidecar, in
ascending order (peak RSS is a high-water mark). Figures are medians over the
repetitions."""

from __future__ import annotations

import json
import subprocess

from . import measure, sidecar, webhook
from .load import Load
from .procs import BenchError, Processes, free_port

HEX = "0123456789abcdef" * 4


def pod(containers: int) -> dict:
    """A plain pod the default policies allow: every container pinned, probed and
    resourced, each with its own image (as a pod of distinct containers has)."""
    def container(i):
        return {
            "name": f"model-{i}",
            "image": f"ghcr.io/acme/model-{i}@sha256:{HEX}",
            "ports": [{"name": "http", "containerPort": 8080 + i}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i},
                               "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/live", "port": 8080 + i},
                              "periodSeconds": 10},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"memory": "1Gi"}},
        }
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "scale", "namespace": "ml-serving", "labels": {"app": "scale"}},
            "spec": {"containers": [container(i) for i in range(containers)]}}


def review(object_: dict) -> str:
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "5c2f2d0e-8b1c-4f43-9a51-0e7a8f6b2c11",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "ml-serving", "operation": "CREATE",
                    "userInfo": {"username": "alice"}, "object": object_,
                    "oldObject": None, "dryRun": False}})


def rules_config(rules: int, key_pem: str) -> str:
    """`rules` signature rules, none of which names the pod's images (`noMatch: allow`:
    other teams' rules): the cost of matching an image against every rule, with no
    registry involved. A covered image's verification is cached after its first review,
    and cold verification is the signatures scenario's."""
    return json.dumps({
        "apiVersion": "guardrail.dev/v1alpha1", "kind": "GuardrailConfig",
        "signatures": {"noMatch": "allow", "rules": [
            {"images": [f"registry.example/team-{i}/**"], "keys": [{"pem": key_pem}]}
            for i in range(rules)]}})


def public_key(work) -> str:
    key = work / "rules.key"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                    "-out", str(key)], check=True, capture_output=True)
    return subprocess.run(["openssl", "ec", "-in", str(key), "-pubout"], check=True,
                          capture_output=True, text=True).stdout


def run_webhook(ctx) -> list[dict]:
    work = ctx.work / "scale"
    work.mkdir(parents=True, exist_ok=True)
    hook = ctx.work / "webhook"  # its certificate: main() runs the webhook scenario first
    tls = ["--tls-cert", str(hook / "tls.crt"), "--tls-key", str(hook / "tls.key")]
    key = public_key(work)
    env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    rows = []
    with Processes(ctx.logs) as procs:
        targets = []
        points = [("containers", n, 1) for n in ctx.mode.scale_containers]
        points += [("rules", 1, n) for n in ctx.mode.scale_rules]
        for axis, containers, rules in points:
            name = f"{axis}={containers if axis == 'containers' else rules}"
            body = measure.write_body(work / f"review-{name}.json", review(pod(containers)))
            args = []
            if axis == "rules":
                config = work / f"config-{name}.yaml"  # JSON is YAML
                config.write_text(rules_config(rules, key))
                args = ["--config", str(config)]
            port = free_port()
            proc = procs.start(f"scale-webhook-{name}", [
                str(ctx.bins["guardrail-webhook"]), "serve", "--listen", f"127.0.0.1:{port}",
                "--metrics-listen", f"127.0.0.1:{free_port()}", *tls, *args], port, env=env)
            answer = webhook.first_answer(port, hook / "ca.crt", body.read_bytes())
            if b'"allowed":true' not in answer.replace(b" ", b""):
                raise BenchError(f"{name}: the webhook did not allow the scale review: "
                                 f"{answer[:400]!r}")
            targets.append(measure.Target(name, webhook.post(port, body), proc))
        ctx.say("scale: webhook review cost against containers per pod and signature rules")
        plan = measure.Plan(rates=[ctx.mode.scale_rate], repetitions=ctx.mode.repetitions,
                            seconds=ctx.mode.seconds, connections=8,
                            labels={"scenario": "scale-webhook"})
        rows += measure.run(ctx.oha, targets, plan, ctx.say)
    return rows


def run_connections(ctx) -> list[dict]:
    """The sidecar (checks on, its default) at a fixed rate of 1000 req/s (or one
    request per connection per second, if more), over more and more concurrent
    keep-alive connections."""
    work = ctx.work / "scale-connections"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    measure.write_body(work / "body.json", sidecar.body_1k())
    env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
    rows = []
    with Processes(ctx.logs) as procs:
        up = free_port()
        (work / "upstream.conf").write_text(sidecar.nginx_upstream(work, up))
        procs.start("scale-upstream", [ctx.tools["nginx"], "-c", str(work / "upstream.conf"),
                                       "-g", "daemon off;"], up)
        port = free_port()
        # Its default bounds are 4096 connections and 1024 requests in flight (more get
        # a 503): raised for the sweep.
        most = max(ctx.mode.scale_connections)
        config = {"limits": {"maxConnections": 2 * most, "maxInFlight": 2 * most}}
        proc = procs.start("scale-sidecar",
                           sidecar.sidecar_cmd(ctx, port, free_port(), up, config), port, env=env)
        ctx.say("scale: sidecar memory and p99 against concurrent connections")
        for connections in sorted(ctx.mode.scale_connections):
            # oha opens a connection when it first sends on it: at least one request per
            # connection per second, so every connection is open and used.
            rate = max(ctx.mode.connection_rate, connections)
            target = measure.Target(f"connections={connections}",
                                    Load(f"http://127.0.0.1:{port}{sidecar.PATH}", 0, 0), proc)
            plan = measure.Plan(rates=[rate], repetitions=ctx.mode.repetitions,
                                seconds=ctx.mode.seconds, connections=connections,
                                labels={"scenario": "scale-connections"})
            rows += measure.run(ctx.oha, [target], plan, ctx.say)
    return rows


def run(ctx) -> list[dict]:
    return run_webhook(ctx) + run_connections(ctx)


# Summary figure -> the sample's key.
FIGURES = {"latency_p50_ms": "latency_ms.p50", "latency_p99_ms": "latency_ms.p99",
           "cpu_us_per_request": "cpu_us_per_request", "peak_rss_mib": "peak_rss_mib"}


def summarise(rows: list[dict], mode) -> dict:
    out = {}
    for scenario in ["scale-webhook", "scale-connections"]:
        names = list(dict.fromkeys(r["target"] for r in rows if r["scenario"] == scenario))
        out[scenario] = {n: {
            figure: measure.summary(rows, key, target=n, scenario=scenario)
            for figure, key in FIGURES.items()} for n in names}
    return out
