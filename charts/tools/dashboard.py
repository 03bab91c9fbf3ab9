"""Builds Guardrail's Grafana dashboard with Grafana's own builder library
(grafana-foundation-sdk) into charts/guardrail/dashboards/guardrail.json, the file the
chart ships in a ConfigMap (label grafana_dashboard) and users import.

    python3 charts/tools/dashboard.py charts/guardrail/dashboards/guardrail.json
    python3 charts/tools/dashboard.py --check charts/guardrail/dashboards/guardrail.json

tests/e2e/tests/dashboard.rs evaluates every query of the file against a real Prometheus
scraping the real binaries; the suite fails when the file is not what this script
builds.

Sidecar series carry `revision`; Prometheus adds `namespace` and `pod`, and the chart's
PodMonitor relabels the pod's Knative Service into `service`.
"""

import json
import sys

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

PROM = DataSourceRef(type_val="prometheus", uid="${datasource}")
CANARY = 'namespace=~"$namespace", service=~"$service", revision=~"$revision"'
WEBHOOK = 'namespace=~"$webhook_namespace"'
RATE = "$__rate_interval"


def query(expr, legend=""):
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(PROM)


def series(title, unit, targets, x, y, w=12, h=8, description=""):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .grid_pos(GridPos(h=h, w=w, x=x, y=y))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def single(title, unit, target, x, y, w=6, h=4, description=""):
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROM)
        .grid_pos(GridPos(h=h, w=w, x=x, y=y))
        .with_target(target)
    )


def variable(name, label, expr):
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROM)
        .query({"query": expr, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .refresh(2)
        .include_all(True)
        .multi(True)
        .all_value(".*")
    )


def annotation(name, color, expr):
    return (
        dashboard.AnnotationQuery()
        .name(name)
        .datasource(PROM)
        .enable(True)
        .icon_color(color)
        .expr(expr)
    )


def build():

    board = (
        dashboard.Dashboard("Guardrail: canaries and admission")
        .uid("guardrail")
        .description(
            "Per revision: traffic, errors, latency, output sanity, guardrail verdicts and "
            "canary weight; rollbacks and promotions as annotations. The webhook: "
            "decisions, latency, signatures, certificates, config reloads, injection."
        )
        .tags(["guardrail", "knative", "kserve"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_variable(variable("namespace", "Namespace", "label_values(guardrail_requests_total, namespace)"))
        .with_variable(
            variable("service", "Service", 'label_values(guardrail_requests_total{namespace=~"$namespace"}, service)')
        )
        .with_variable(
            variable(
                "revision",
                "Revision",
                'label_values(guardrail_requests_total{namespace=~"$namespace", service=~"$service"}, revision)',
            )
        )
        .with_variable(
            variable(
                "webhook_namespace",
                "Webhook namespace",
                "label_values(guardrail_admission_requests_total, namespace)",
            )
        )
        .annotation(
            annotation(
                "Rollbacks",
                "red",
                f'sum by (revision) (changes(guardrail_actions_total{{{CANARY}, action="rollback", outcome="written"}}[2m])) > 0',
            )
        )
        .annotation(
            annotation(
                "Promotions",
                "green",
                f'sum by (revision) (changes(guardrail_actions_total{{{CANARY}, action="promotion", outcome="written"}}[2m])) > 0',
            )
        )
    )

    y = 0
    board = board.with_row(dashboard.Row("Canaries").grid_pos(GridPos(h=1, w=24, x=0, y=y)))
    y += 1
    board = board.with_panel(
        series(
            "Requests per second",
            "reqps",
            [query(f"sum by (revision) (rate(guardrail_requests_total{{{CANARY}}}[{RATE}]))", "{{revision}}")],
            0,
            y,
        )
    ).with_panel(
        series(
            "Error ratio",
            "percentunit",
            [
                query(
                    f"sum by (revision) (rate(guardrail_request_errors_total{{{CANARY}}}[{RATE}])) / "
                    f"sum by (revision) (rate(guardrail_requests_total{{{CANARY}}}[{RATE}]))",
                    "{{revision}}",
                )
            ],
            12,
            y,
            description="5xx, non-zero grpc-status and upstream failures over all requests (probes excluded).",
        )
    )
    y += 8
    latency = [
        query(
            f"histogram_quantile({q}, sum by (revision, le) (rate(guardrail_request_duration_seconds_bucket{{{CANARY}}}[{RATE}])))",
            f"{{{{revision}}}} p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]
    board = board.with_panel(series("Latency p50 / p95 / p99", "s", latency, 0, y)).with_panel(
        series(
            "Sanity failures by check",
            "percentunit",
            [
                query(
                    f"sum by (revision, check) (rate(guardrail_sanity_failures_total{{{CANARY}}}[{RATE}])) / on (revision) group_left "
                    f"sum by (revision) (rate(guardrail_sanity_checked_total{{{CANARY}}}[{RATE}]))",
                    "{{revision}} {{check}}",
                )
            ],
            12,
            y,
            description="Share of checked responses failing each output sanity check.",
        )
    )
    y += 8
    board = (
        board.with_panel(
            series(
                "Guardrail breaches",
                "short",
                [query(f"max by (revision, guardrail) (guardrail_breached{{{CANARY}}})", "{{revision}} {{guardrail}}")],
                0,
                y,
                w=8,
                description="1 while a guardrail's sequential test says breach (the judge then rolls back).",
            )
        )
        .with_panel(
            series(
                "Guardrail states",
                "short",
                [
                    query(
                        f"max by (revision, guardrail, state) (guardrail_verdict{{{CANARY}}}) == 1",
                        "{{revision}} {{guardrail}} {{state}}",
                    )
                ],
                8,
                y,
                w=8,
                description="Each guardrail's current state as judged: breach, healthy, undecided, skipped, off.",
            )
        )
        .with_panel(
            series(
                "Canary weight",
                "percent",
                [query(f"max by (revision) (guardrail_traffic_percent{{{CANARY}}})", "{{revision}}")],
                16,
                y,
                w=8,
                description="The revision's share of its Service's traffic, as the sidecar last read it.",
            )
        )
    )
    y += 8
    board = board.with_panel(
        series(
            "Output drift (PSI)",
            "short",
            [query(f"max by (revision) (guardrail_window_score_psi{{{CANARY}}})", "{{revision}}")],
            0,
            y,
            description="Population stability index of the window's scores against the reference (NaN without sanity.score).",
        )
    ).with_panel(
        series(
            "Rollbacks, promotions and API errors",
            "short",
            [
                query(
                    f"sum by (action, outcome) (increase(guardrail_actions_total{{{CANARY}}}[{RATE}]))",
                    "{{action}} {{outcome}}",
                ),
                query(
                    f"sum by (reason) (increase(guardrail_kube_api_errors_total{{{CANARY}}}[{RATE}]))",
                    "API {{reason}}",
                ),
            ],
            12,
            y,
        )
    )
    y += 8
    board = board.with_row(dashboard.Row("Admission webhook").grid_pos(GridPos(h=1, w=24, x=0, y=y)))
    y += 1
    board = board.with_panel(
        series(
            "Decisions by kind and result",
            "reqps",
            [
                query(
                    f"sum by (kind, decision) (rate(guardrail_admission_requests_total{{{WEBHOOK}}}[{RATE}]))",
                    "{{kind}} {{decision}}",
                )
            ],
            0,
            y,
        )
    ).with_panel(
        series(
            "Decision latency",
            "s",
            [
                query(
                    f"histogram_quantile({q}, sum by (le) (rate(guardrail_admission_decision_seconds_bucket{{{WEBHOOK}}}[{RATE}])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            12,
            y,
        )
    )
    y += 8
    board = (
        board.with_panel(
            single(
                "Signature cache hit ratio",
                "percentunit",
                query(
                    f'sum(rate(guardrail_signature_cache_lookups_total{{{WEBHOOK}, result="hit"}}[{RATE}])) / '
                    f"sum(rate(guardrail_signature_cache_lookups_total{{{WEBHOOK}}}[{RATE}]))"
                ),
                0,
                y,
            )
        )
        .with_panel(
            single(
                "Certificate expires in",
                "s",
                query(
                    f"min(guardrail_webhook_certificate_expiry_timestamp_seconds{{{WEBHOOK}}}) - time()"
                ),
                6,
                y,
            )
        )
        .with_panel(
            single(
                "Config reload failures",
                "short",
                query(f'sum(increase(guardrail_config_reloads_total{{{WEBHOOK}, result="failure"}}[1h]))'),
                12,
                y,
                description="Failed reloads in the last hour; the last good config is kept.",
            )
        )
        .with_panel(
            single(
                "Last config load OK",
                "short",
                query(f"min(guardrail_config_last_reload_success{{{WEBHOOK}}})"),
                18,
                y,
            )
        )
    )
    y += 4
    board = board.with_panel(
        series(
            "Registry errors",
            "short",
            [
                query(
                    f"sum by (kind) (rate(guardrail_signature_registry_errors_total{{{WEBHOOK}}}[{RATE}]))",
                    "{{kind}}",
                )
            ],
            0,
            y,
        )
    ).with_panel(
        series(
            "Sidecar injections",
            "short",
            [
                query(
                    f"sum by (result) (rate(guardrail_injections_total{{{WEBHOOK}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            12,
            y,
        )
    )
    return board.build()


def main(argv):
    check = "--check" in argv
    path = [a for a in argv if not a.startswith("--")][0]
    text = json.dumps(json.loads(JSONEncoder(sort_keys=True, indent=2).encode(build())), indent=2, sort_keys=True) + "\n"
    if check:
        with open(path) as f:
            if f.read() != text:
                sys.exit(f"{path} is stale: run python3 charts/tools/dashboard.py {path}")
        return
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
