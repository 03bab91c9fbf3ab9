#!/usr/bin/env bash
# Instructions per request of the sidecar versus nginx proxy_pass, counted by valgrind
# (repeatable on a loaded, shared machine where wall-clock numbers are noise).
#
#   sidecar/bench/instructions.sh                 # release build, N=5000 requests
#   N=20000 sidecar/bench/instructions.sh         # profiles land in $OUT
#   SIDECAR=/path/to/other/build sidecar/bench/instructions.sh   # compare builds
#
# Same topology as run.sh: nginx serves a static 1 KB JSON body; the proxy under test
# (sidecar or an nginx proxy_pass worker) runs under valgrind; oha sends N requests on
# C keep-alive connections. A warm-up of W requests is subtracted (startup, pools).
# Prints: <proxy> instructions/request.
set -euo pipefail
cd "$(dirname "$0")/../.."
# One target directory for everything: cargo's default ./target, the one the
# Quickstart builds into, so nothing is compiled twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
N="${N:-5000}"
W="${W:-500}"
C="${C:-8}"
OUT="${OUT:-/tmp/guardrail-instructions}"
WITH_NGINX="${WITH_NGINX:-1}"
PATH_="${BENCH_PATH:-/v1/models/bench:predict}"
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx missing: apt-get install nginx-light" >&2; exit 1; }
[ -x "$OHA" ] || { echo "oha missing: cargo install oha" >&2; exit 1; }
if [ -z "${SIDECAR:-}" ]; then
  cargo build --release -p guardrail-sidecar --bins >/dev/null
  SIDECAR="$CARGO_TARGET_DIR/release/guardrail-sidecar"
fi
mkdir -p "$OUT"

source sidecar/bench/lib.sh
cat >"$WORK/up.conf" <<CONF
worker_processes 1;
pid $WORK/up.pid;
error_log $WORK/up.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  # Every path answers the 1 KB JSON body with 200 (the "model").
  server { listen 127.0.0.1:$UP; root $WORK; location / { default_type application/json; try_files /body.json =404; } }
}
CONF
# The proxy under comparison: one nginx worker, no master, so valgrind sees it all.
cat >"$WORK/proxy.conf" <<CONF
worker_processes 1;
master_process off;
pid $WORK/proxy.pid;
error_log $WORK/proxy.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream model { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$WORK/up.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "$UP"

# count <name> <port> <path> <cmd...>: runs cmd under valgrind, W warm-up then N requests.
count() {
  local name=$1 p=$2 path=$3; shift 3
  local log="$OUT/$name.out"
  valgrind --tool=callgrind --callgrind-out-file="$log" "$@" >/dev/null 2>"$WORK/$name.vg" &
  local vpid=$!
  PIDS+=($vpid)
  wait_port "$p"
  "$OHA" --no-tui -n "$W" -c "$C" "http://127.0.0.1:$p$path" >/dev/null
  # Count only the measured requests: zero after the warm-up; the totals are written
  # when the proxy exits (graceful shutdown on SIGINT, a small constant).
  callgrind_control -z "$vpid" >/dev/null
  "$OHA" --no-tui -n "$N" -c "$C" "http://127.0.0.1:$p$path" >"$OUT/$name.oha"
  kill -INT "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  grep -q "\[200\] $N responses" "$OUT/$name.oha" || { echo "$name: not all $N answers were 200 (see $OUT/$name.oha)" >&2; exit 1; }
  local ir
  ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$log")
  echo "$name: $(python3 -c "print(round($ir/$N))") instructions/request (N=$N, C=$C, profile $log)"
}

RUST_LOG=warn count sidecar "$SC" "$PATH_" "$SIDECAR" --listen "127.0.0.1:$SC" \
  --admin-listen "127.0.0.1:$AD" --upstream "http://127.0.0.1:$UP"
if [ "$WITH_NGINX" = 1 ]; then
  count nginx "$NG" / nginx -c "$WORK/proxy.conf" -g 'daemon off;'
fi
