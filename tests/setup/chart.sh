# Sourced by tests/run.sh: what the Helm chart test (tests/e2e/tests/chart.rs) needs, in a
# venv: helm-python-sdk (the real Helm v4 engine as a library: render and lint, no helm
# binary) and kubernetes-validate (Kubernetes OpenAPI schemas).
# Exports GUARDRAIL_CHART_PYTHON and GUARDRAIL_KUBERNETES_VALIDATE (the test's defaults are
# $HOME/.cache/guardrail/chart-venv/bin/{python,kubernetes-validate}).
apt_need python3 python3-venv
CHART_VENV="$GUARDRAIL_CACHE/chart-venv"
if ! "$CHART_VENV/bin/python" -c 'import helm_python, kubernetes_validate' >/dev/null 2>&1; then
  log "pip install helm-python-sdk kubernetes-validate into $CHART_VENV"
  python3 -m venv "$CHART_VENV"
  "$CHART_VENV/bin/pip" install -q --upgrade pip
  "$CHART_VENV/bin/pip" install -q 'helm-python-sdk>=0.2.2,<0.3' 'kubernetes-validate>=1.37,<2'
fi
export GUARDRAIL_CHART_PYTHON="$CHART_VENV/bin/python"
export GUARDRAIL_KUBERNETES_VALIDATE="$CHART_VENV/bin/kubernetes-validate"
