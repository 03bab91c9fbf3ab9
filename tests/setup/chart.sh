# Sourced by tests/run.sh: what the Helm chart tests (tests/e2e/tests/chart.rs,
# dashboard.rs) need, in a venv: helm-python-sdk (the real Helm v4 engine as a library:
# render and lint, no helm binary), kubernetes-validate (Kubernetes OpenAPI schemas; its
# jsonschema also checks our CRD objects) and grafana-foundation-sdk (Grafana's builder
# library, which charts/tools/dashboard.py builds the dashboard with; pinned, since the
# suite compares its output with the committed file).
# Exports GUARDRAIL_CHART_PYTHON and GUARDRAIL_KUBERNETES_VALIDATE (the test's defaults are
# $HOME/.cache/guardrail/chart-venv/bin/{python,kubernetes-validate}).
apt_need python3 python3-venv
CHART_VENV="$GUARDRAIL_CACHE/chart-venv"
GRAFANA_SDK_VERSION='1769699998!10.1.0'
if ! "$CHART_VENV/bin/python" -c 'import helm_python, kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1; then
  log "pip install helm-python-sdk kubernetes-validate into $CHART_VENV"
  python3 -m venv "$CHART_VENV"
  "$CHART_VENV/bin/pip" install -q --upgrade pip
  "$CHART_VENV/bin/pip" install -q 'helm-python-sdk>=0.2.2,<0.3' 'kubernetes-validate>=1.37,<2'
fi
if ! "$CHART_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('grafana-foundation-sdk') != '$GRAFANA_SDK_VERSION')" >/dev/null 2>&1; then
  log "pip install grafana-foundation-sdk==$GRAFANA_SDK_VERSION into $CHART_VENV"
  "$CHART_VENV/bin/pip" install -q "grafana-foundation-sdk==$GRAFANA_SDK_VERSION"
fi
export GUARDRAIL_CHART_PYTHON="$CHART_VENV/bin/python"
export GUARDRAIL_KUBERNETES_VALIDATE="$CHART_VENV/bin/kubernetes-validate"
