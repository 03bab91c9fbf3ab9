#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (apt, pip),
# checks formatting and lints, builds the binaries, then runs every test.
#
#   tests/run.sh            # everything
#   tests/run.sh -E 'package(guardrail-sidecar)'   # extra args go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# One target directory for everything: cargo's default ./target, the one the
# Quickstart builds into, so nothing is compiled twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export GUARDRAIL_CACHE="${GUARDRAIL_CACHE:-$HOME/.cache/guardrail}"
mkdir -p "$GUARDRAIL_CACHE"

log() { printf '\n==> %s\n' "$*"; }

# apt_need PKG... installs the Debian packages that are missing (one `apt-get update`).
APT_UPDATED=0
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Each file in tests/setup/ installs (idempotently) what one area's tests need and
# exports the paths its tests read (e.g. GUARDRAIL_REGISTRY_BIN).
for setup in tests/setup/*.sh; do
  [ -e "$setup" ] || continue
  log "setup: $setup"
  # shellcheck source=/dev/null
  source "$setup"
done

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo deny check licenses bans sources"
"$GUARDRAIL_CARGO_DENY" check licenses bans sources 2>&1 | tail -n 3

log "cargo build (binaries and examples used by the end-to-end tests)"
cargo build --workspace --bins --examples

log "cargo nextest run"
cargo nextest run --workspace --profile ci "$@"
