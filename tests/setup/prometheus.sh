# Sourced by tests/run.sh: Debian's Prometheus for the sidecar scrape test.
# Exports GUARDRAIL_PROMETHEUS_BIN (the test's default is /usr/bin/prometheus).
apt_need prometheus
export GUARDRAIL_PROMETHEUS_BIN="${GUARDRAIL_PROMETHEUS_BIN:-/usr/bin/prometheus}"
# The Debian package starts a system service we do not use: stop it so it neither
# takes a core nor port 9090 (harmless if systemd is absent, as in containers).
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
