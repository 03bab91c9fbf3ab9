# Shared setup of run.sh and instructions.sh (sourced from the repository root):
# a scratch dir with cleanup of started processes, port helpers and the 1 KB body.
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
UP=$(port); NG=$(port); SC=$(port); AD=$(port)
python3 - "$WORK/body.json" <<'PY'
import json, sys
body = {"predictions": [[0.125, 0.875]] * 40, "model_name": "bench"}
text = json.dumps(body)
text = text + " " * (1024 - len(text))
open(sys.argv[1], "w").write(text)
PY
# nginx workers run as an unprivileged user: let them read the body.
chmod a+rx "$WORK"; chmod a+r "$WORK/body.json"
