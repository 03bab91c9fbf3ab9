# API emulator tests: the real `kubectl` (>= 1.27: it must read /openapi/v3) drives the
# emulator as a client no one here wrote. Sourced by tests/run.sh, which defines
# `apt_need`; idempotent.
if ! command -v kubectl >/dev/null 2>&1; then
  if apt-cache show kubectl >/dev/null 2>&1; then
    apt_need kubectl
  else
    echo "kube-emulator: kubectl is not installed and apt has no 'kubectl' package;" \
      "install kubectl >= 1.27 or set GUARDRAIL_KUBECTL" >&2
  fi
fi
export GUARDRAIL_KUBECTL="${GUARDRAIL_KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}"
