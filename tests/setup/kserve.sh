# Sourced by tests/run.sh: the real KServe Python model server in a venv, for the
# sidecar tests' misbehaving model (tests/e2e/models/model.py).
# Exports GUARDRAIL_KSERVE_PYTHON (the test's default is
# $HOME/.cache/guardrail/kserve-venv/bin/python).
apt_need python3 python3-venv
KSERVE_VENV="$GUARDRAIL_CACHE/kserve-venv"
if ! "$KSERVE_VENV/bin/python" -c 'import kserve, sklearn' >/dev/null 2>&1; then
  log "pip install kserve scikit-learn into $KSERVE_VENV"
  python3 -m venv "$KSERVE_VENV"
  "$KSERVE_VENV/bin/pip" install -q --upgrade pip
  "$KSERVE_VENV/bin/pip" install -q kserve scikit-learn
fi
export GUARDRAIL_KSERVE_PYTHON="$KSERVE_VENV/bin/python"
