#!/usr/bin/env bash
# Benchmark of the sidecar's data path (not a test): added latency at fixed rates,
# throughput at saturation against nginx proxy_pass, CPU per 1000 requests, peak RSS.
#
#   sidecar/bench/run.sh            # needs nginx (apt-get install nginx-light) and oha
#   RUNS=5 DURATION=10s sidecar/bench/run.sh
#   SIDECAR=/tmp/other-build TOKIO_WORKER_THREADS=1 sidecar/bench/run.sh
#
# Topology on loopback: nginx serves a static 1 KB JSON body (the "model"); the
# sidecar (release build) and an nginx `proxy_pass` with upstream keep-alive both sit
# in front of it. oha drives open-loop fixed-rate load with latency correction.
set -euo pipefail
cd "$(dirname "$0")/../.."
# One target directory for everything: cargo's default ./target, the one the
# Quickstart builds into, so nothing is compiled twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-5s}"
CONNS="${CONNS:-32}"
command -v nginx >/dev/null || { echo "nginx missing: apt-get install nginx-light" >&2; exit 1; }
[ -x "$OHA" ] || { echo "oha missing: cargo install oha" >&2; exit 1; }
if [ -z "${SIDECAR:-}" ]; then
  cargo build --release -p guardrail-sidecar --bins >/dev/null
  SIDECAR="$CARGO_TARGET_DIR/release/guardrail-sidecar"
fi

source sidecar/bench/lib.sh
cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream model { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$UP;
    # Every path answers the body with 200, also the sidecar's KServe V1 path (so its
    # output checks run, as in production).
    root $WORK;
    location / { default_type application/json; try_files /body.json =404; }
  }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
RUST_LOG=warn "$SIDECAR" --listen "127.0.0.1:$SC" --admin-listen "127.0.0.1:$AD" --upstream "http://127.0.0.1:$UP" >/dev/null &
SPID=$!
PIDS+=($SPID)
for p in $UP $NG $SC; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$SPID/stat"; }
# oha JSON -> "p50_ms p99_ms rps"
# Fails on any non-200 answer: a benchmark of error pages measures nothing useful.
summary() { python3 -c 'import json,sys; d=json.load(sys.stdin); s=d.get("statusCodeDistribution",{}); bad={k:v for k,v in s.items() if k!="200"}; bad and sys.exit(f"non-200 responses {bad}: fix the bench setup"); p=d["latencyPercentiles"]; print(round(p["p50"]*1e3,3), round(p["p99"]*1e3,3), round(d["summary"]["requestsPerSec"]))'; }
load() { "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNS" "$@" | summary; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A R
for run in $(seq "$RUNS"); do
  for rate in 1000 5000; do
    R[direct_$rate]+="$(load -q $rate --latency-correction "http://127.0.0.1:$UP/")"$'\n'
    before=$(cpu_ticks)
    R[sidecar_$rate]+="$(load -q $rate --latency-correction "http://127.0.0.1:$SC/v1/models/bench:predict")"$'\n'
    after=$(cpu_ticks)
    R[cpu_$rate]+="$(python3 -c "import os; t=($after-$before)/os.sysconf('SC_CLK_TCK'); d=float('$DURATION'.rstrip('s')); print(round(t/($rate*d/1000),4))")"$'\n'
  done
  R[nginx_sat]+="$(load "http://127.0.0.1:$NG/")"$'\n'
  R[sidecar_sat]+="$(load "http://127.0.0.1:$SC/v1/models/bench:predict")"$'\n'
done

col() { printf '%s' "${R[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
echo "runs=$RUNS duration=$DURATION connections=$CONNS (medians)"
for rate in 1000 5000; do
  d50=$(col direct_$rate 1); d99=$(col direct_$rate 2); s50=$(col sidecar_$rate 1); s99=$(col sidecar_$rate 2)
  echo "rate $rate/s: direct p50 ${d50} ms p99 ${d99} ms | sidecar p50 ${s50} ms p99 ${s99} ms | added p50 $(python3 -c "print(round($s50-$d50,3))") ms p99 $(python3 -c "print(round($s99-$d99,3))") ms | CPU s/1000 req $(printf '%s' "${R[cpu_$rate]}" | median)"
done
n=$(col nginx_sat 3); s=$(col sidecar_sat 3)
echo "saturation: nginx proxy_pass ${n} req/s, sidecar ${s} req/s, ratio $(python3 -c "print(round($s/$n,2))")"
echo "sidecar peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$SPID/status)"
