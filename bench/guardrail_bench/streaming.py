"""Scenario 1b, streaming: time to first byte of an OpenAI chat completion streamed as
Server-Sent Events, directly and through the sidecar with its checks on. The sidecar
tees a response for its checks and must never hold it back: the first event has to
reach the client as soon as the model sends it, not when the stream ends.

The model is a paced SSE server (this module, run as its own process): each stream's
events are sent `interval` apart, so a proxy that buffered the stream would add the
whole stream's duration to the first byte. The client times, on keep-alive
connections, from the request's last byte to the first byte of the body (the first
event) and to the end of the stream."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from . import measure, sidecar
from .procs import BenchError, Processes, free_port

PATH = "/v1/chat/completions"
EVENTS = 8
INTERVAL_MS = 5.0
CONNECTIONS = 4


def events(n: int) -> list[bytes]:
    """A chat completion of `n` events: a word each, then `finish_reason: stop`."""
    return [e.encode() for e in sidecar.sse_events([f" word{i}" for i in range(n - 1)])]


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def serve(port: int, n: int, interval: float) -> None:
    body = events(n)

    async def handle(reader, writer):
        try:
            while True:
                await read_head(reader)  # GETs: no request body
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                for i, event in enumerate(body):
                    if i:
                        await asyncio.sleep(interval)
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def one_stream(reader, writer, host: str) -> tuple[float, float, bytes]:
    """(time to first body byte, time to the end, body) of one streamed answer."""
    writer.write(f"GET {PATH} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n"
                 .encode())
    await writer.drain()
    sent = time.perf_counter()
    head = await read_head(reader)
    status = head.split(b"\r\n", 1)[0]
    if status.split()[1:2] != [b"200"]:
        raise BenchError(f"{host}{PATH} answered {status!r}")
    headers = head.lower()
    first = None
    body = b""
    if b"transfer-encoding: chunked" in headers:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if first is None:
                first = time.perf_counter()
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                      if line.startswith(b"content-length:"))
        body = await reader.readexactly(1)
        first = time.perf_counter()
        body += await reader.readexactly(length - 1)
    return first - sent, time.perf_counter() - sent, body


async def load(port: int, streams: int, connections: int) -> list[tuple[float, float]]:
    host = f"127.0.0.1:{port}"
    want = b"".join(events(EVENTS))

    async def worker(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        try:
            for _ in range(count):
                ttfb, total, body = await one_stream(reader, writer, host)
                if body != want:
                    raise BenchError(f"{host}: the stream arrived changed ({len(body)} bytes)")
                out.append((ttfb, total))
        finally:
            writer.close()
        return out

    per = [streams // connections + (i < streams % connections) for i in range(connections)]
    done = await asyncio.gather(*(worker(n) for n in per if n))
    return [t for ts in done for t in ts]


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, as the example's and oha's percentiles."""
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * q)]


def run(ctx) -> list[dict]:
    streams = ctx.mode.sse_streams
    ctx.say(f"streaming: time to first byte, {streams} SSE streams of {EVENTS} events "
            f"{INTERVAL_MS} ms apart per path and repetition")
    rows = []
    with Processes(ctx.logs) as procs:
        up = free_port()
        procs.start("sse-model", [sys.executable, "-m", "guardrail_bench.streaming", "--port",
                                  str(up), "--events", str(EVENTS), "--interval-ms",
                                  str(INTERVAL_MS)], up)
        port, admin = free_port(), free_port()
        env = {"TOKIO_WORKER_THREADS": "1", "RUST_LOG": "warn"}
        proxy = procs.start("sse-sidecar", sidecar.sidecar_cmd(ctx, port, admin, up, {}),
                            port, env=env)
        proxy.admin = admin
        targets = [("direct", up, None), ("sidecar+sanity sse", port, proxy)]
        for rep in range(ctx.mode.repetitions):
            shift = rep % len(targets)
            for name, p, proc in targets[shift:] + targets[:shift]:
                cpu = proc.cpu_seconds() if proc else None
                times = asyncio.run(load(p, streams, CONNECTIONS))
                row = {"scenario": "streaming", "target": name, "rep": rep, "rate": None,
                       "streams": len(times)}
                for key, i in (("ttfb_ms", 0), ("total_ms", 1)):
                    values = [t[i] * 1e3 for t in times]
                    row[key] = {p: round(percentile(values, q), 4)
                                for p, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
                if proc:
                    row["cpu_us_per_stream"] = round(
                        (proc.cpu_seconds() - cpu) / len(times) * 1e6, 1)
                ctx.say(f"  streaming rep {rep} {name:<20} first byte p50 "
                        f"{row['ttfb_ms']['p50']:.3f} p99 {row['ttfb_ms']['p99']:.3f} ms, "
                        f"end p50 {row['total_ms']['p50']:.3f} ms")
                rows.append(row)
        counts = sidecar.require_sane(
            proxy, sum(r["streams"] for r in rows if r["target"] != "direct"), "sse sidecar")
        rows.append({"scenario": "streaming-sanity-counts", **counts})
    return rows


def summarise(rows: list[dict], mode) -> dict:
    measured = [r for r in rows if r["scenario"] == "streaming"]
    out = {"events": EVENTS, "interval_ms": INTERVAL_MS, "connections": CONNECTIONS,
           "targets": {}}
    for target in ["direct", "sidecar+sanity sse"]:
        out["targets"][target] = {
            f"{key}_{p}": measure.summary(measured, f"{key}.{p}", target=target)
            for key in ("ttfb_ms", "total_ms") for p in ("p50", "p99")}
    out["targets"]["sidecar+sanity sse"]["cpu_us_per_stream"] = measure.summary(
        measured, "cpu_us_per_stream", target="sidecar+sanity sse")
    out["added"] = {f"{key}_{p}": measure.paired(measured, "sidecar+sanity sse", "direct",
                                                 f"{key}.{p}", "difference")
                    for key in ("ttfb_ms", "total_ms") for p in ("p50", "p99")}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a paced SSE model server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--interval-ms", type=float, default=INTERVAL_MS)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.events, args.interval_ms / 1e3))
    except KeyboardInterrupt:
        pass
