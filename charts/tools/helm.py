"""Render and lint a chart with the real Helm (v4 SDK through helm-python-sdk), no helm
binary needed. Used by tests/e2e/tests/chart.rs; handy for developers too:

    $GUARDRAIL_CHART_PYTHON charts/tools/helm.py charts/guardrail < cases.json

stdin: a JSON list of cases {"name", "namespace", "values"}. stdout: one JSON list with,
per case, {"name", "lint": {...}, "manifests": {template: yaml}} or {"name", "error"}.
"""

import json
import sys

import helm_python as helm


def run(chart_dir, case):
    values = case.get("values") or {}
    namespace = case.get("namespace", "guardrail-system")
    out = {"name": case["name"]}
    lint = helm.lint(chart_dir, values, strict=True, namespace=namespace)
    out["lint"] = lint
    try:
        with helm.Chart.load(chart_dir) as chart:
            out["manifests"] = chart.render(
                values, name=case.get("release", "guardrail"), namespace=namespace, is_install=True
            )
    except helm.HelmError as err:
        out["error"] = str(err)
    return out


def main():
    chart_dir = sys.argv[1]
    cases = json.load(sys.stdin)
    json.dump([run(chart_dir, case) for case in cases], sys.stdout)


if __name__ == "__main__":
    main()
