#!/usr/bin/env bash
# The Guardrail story on one machine, no cluster: the Kubernetes API emulator with a
# Knative Service split 75/25 between two revisions, a small model server per
# revision, a guardrail sidecar in front of each, load — then the canary turns bad and
# its sidecar rolls it back. Prints what happened and when.
#
#   examples/demo.sh            # needs cargo, python3 and curl
set -euo pipefail
cd "$(dirname "$0")/.."
# One target directory for everything: cargo's default ./target, the one the
# Quickstart builds into, so nothing is compiled twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '%s  %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "building guardrail-sidecar and kube-emulator"
cargo build -q -p guardrail-sidecar -p kube-emulator --bins
BIN=$CARGO_TARGET_DIR/debug
SIDECAR=${GUARDRAIL_SIDECAR_BIN:-$BIN/guardrail-sidecar}

# --- the cluster: a Knative Service with two revisions, 75% stable / 25% canary ---
cat >"$WORK/seed.yaml" <<'EOF'
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: sentiment, namespace: default}
spec:
  template: {spec: {containers: [{image: "registry.example/sentiment@sha256:aaaa"}]}}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: sentiment
  namespace: default
  annotations:
    guardrail.dev/max-error-ratio: "0.05"
    guardrail.dev/min-requests: "50"
spec:
  template: {spec: {containers: [{image: "registry.example/sentiment@sha256:bbbb"}]}}
  traffic:
  - {revisionName: sentiment-00001, percent: 75, tag: previous}
  - {latestRevision: true, percent: 25}
EOF
API_PORT=$(free_port)
"$BIN/kube-emulator" --listen "127.0.0.1:$API_PORT" --kubeconfig-out "$WORK/kubeconfig" \
  --seed "$WORK/seed.yaml" 2>"$WORK/emulator.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/kubeconfig" ] && break; sleep 0.1; done
[ -s "$WORK/kubeconfig" ] || { echo "the emulator did not start:"; cat "$WORK/emulator.log"; exit 1; }
export KUBECONFIG=$WORK/kubeconfig
TOKEN=$(sed -n 's/^ *token: //p' "$KUBECONFIG")
sed -n 's/^ *certificate-authority-data: //p' "$KUBECONFIG" | base64 -d >"$WORK/ca.pem"
api() { curl -s --cacert "$WORK/ca.pem" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT$1"; }
KSVC=/apis/serving.knative.dev/v1/namespaces/default/services/sentiment
show_traffic() {
  api "$KSVC" | python3 -c 'import json,sys; s=json.load(sys.stdin)
for t in s["spec"]["traffic"]:
    print("            %-18s %3d%%  %s" % (t.get("revisionName","@latest"), t["percent"], ("tag="+t["tag"]) if t.get("tag") else ""))'
}
say "kube-emulator on :$API_PORT; ksvc/sentiment traffic:"
show_traffic

# --- a small model server per revision; the canary's turns bad when $WORK/bad exists ---
cat >"$WORK/model.py" <<'EOF'
import http.server, json, os, sys
bad_flag = sys.argv[2]
class Model(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if bad_flag and os.path.exists(bad_flag):
            code, body = 500, {"error": "CUDA error: an illegal memory access was encountered"}
        else:
            code, body = 200, {"predictions": [0.93]}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Model).serve_forever()
EOF
declare -A PROXY ADMIN
for rev in sentiment-00001 sentiment-00002; do
  model_port=$(free_port)
  flag=""; [ "$rev" = sentiment-00002 ] && flag="$WORK/bad"
  python3 "$WORK/model.py" "$model_port" "$flag" &
  PIDS+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null -X POST "http://127.0.0.1:$model_port/" && break; sleep 0.1; done
  K_SERVICE=sentiment K_REVISION=$rev K_CONFIGURATION=sentiment POD_NAMESPACE=default \
    POD_NAME="$rev-deployment-1" RUST_LOG=info \
    "$SIDECAR" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --upstream "http://127.0.0.1:$model_port" >"$WORK/$rev.out" 2>"$WORK/$rev.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/$rev.out" ] && break; sleep 0.1; done
  PROXY[$rev]=$(sed -n 's/.*proxy=\([^ ]*\).*/\1/p' "$WORK/$rev.out")
  ADMIN[$rev]=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$WORK/$rev.out")
  say "$rev: model on :$model_port, sidecar proxy ${PROXY[$rev]} admin ${ADMIN[$rev]}"
done

# --- load: 3 of 4 requests to the stable revision, 1 of 4 to the canary ---
send() { curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"instances":["great movie"]}' \
  "http://$1/v1/models/sentiment:predict"; }
load() {
  while true; do
    for rev in sentiment-00001 sentiment-00001 sentiment-00001 sentiment-00002; do
      send "${PROXY[$rev]}" >/dev/null
    done
  done
}
load &
PIDS+=($!)
say "load running (75/25); canary healthy for 3 s"
sleep 3
# metric REVISION NAME [LABEL]: sum of the samples of NAME (with LABEL) of that sidecar.
metric() {
  curl -s "http://${ADMIN[$1]}/metrics" | grep -v '^#' | grep -E "^$2(\{| )" | grep -F -- "${3:-}" |
    awk '{s+=$NF} END {print s+0}'
}
say "canary window: $(metric sentiment-00002 guardrail_window_requests) requests, error ratio $(metric sentiment-00002 guardrail_window_error_ratio)"

touch "$WORK/bad"
BAD_AT=$(date +%s.%N)
say "the canary's model starts failing (500s)"
for _ in $(seq 300); do
  [ "$(metric sentiment-00002 guardrail_actions_total 'outcome="written"')" != 0 ] && break
  sleep 0.05
done
DONE_AT=$(date +%s.%N)
say "rolled back $(python3 -c "print(f'{$DONE_AT-$BAD_AT:.2f}')") s after the model turned bad (mostly waiting for 50 requests at this load)"
show_traffic
say "annotations on ksvc/sentiment:"
api "$KSVC" | python3 -c 'import json,sys; a=json.load(sys.stdin)["metadata"]["annotations"]
[print("            %s: %s" % kv) for kv in sorted(a.items()) if kv[0].startswith("guardrail.dev/")]'
say "events:"
api /apis/events.k8s.io/v1/namespaces/default/events | python3 -c 'import json,sys
for e in json.load(sys.stdin)["items"]: print("            %s %s: %s" % (e["type"], e["reason"], e["note"]))'
say "the stable revision's sidecar decided nothing: $(metric sentiment-00001 guardrail_actions_total 'outcome="written"') writes"
say "the canary sidecar's log:"
grep -E "rolled back|breach" "$WORK/sentiment-00002.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/            /' | tail -3
