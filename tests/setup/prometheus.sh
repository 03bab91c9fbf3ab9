# Sourced by tests/run.sh: Debian's Prometheus for the sidecar scrape test.
# Exports GUARDRAIL_PROMETHEUS_BIN and GUARDRAIL_PROMTOOL (defaults /usr/bin/prometheus,
# /usr/bin/promtool: the chart's alert rules are checked with it).
apt_need prometheus
export GUARDRAIL_PROMETHEUS_BIN="${GUARDRAIL_PROMETHEUS_BIN:-/usr/bin/prometheus}"
export GUARDRAIL_PROMTOOL="${GUARDRAIL_PROMTOOL:-/usr/bin/promtool}"
# The Debian package starts a system service we do not use: stop it so it neither
# takes a core nor port 9090 (harmless if systemd is absent, as in containers).
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
