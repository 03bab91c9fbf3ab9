# Signatures tests: a real OCI registry (Debian's `docker-registry`, the CNCF
# distribution server) and `htpasswd` to make its basic-auth file.
# Sourced by tests/run.sh, which defines `apt_need`; idempotent.
apt_need docker-registry apache2-utils
export GUARDRAIL_REGISTRY_BIN="${GUARDRAIL_REGISTRY_BIN:-/usr/bin/docker-registry}"
export GUARDRAIL_HTPASSWD_BIN="${GUARDRAIL_HTPASSWD_BIN:-/usr/bin/htpasswd}"
