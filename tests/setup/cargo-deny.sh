# Sourced by tests/run.sh; idempotent. cargo-deny for `cargo deny check licenses bans
# sources` (SECURITY.md, deny.toml): built once from crates.io into the cache.
CARGO_DENY_VERSION=0.20.2
DENY_ROOT="$GUARDRAIL_CACHE/tools"
if ! "$DENY_ROOT/bin/cargo-deny" --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  log "cargo install cargo-deny $CARGO_DENY_VERSION (once; cached in $DENY_ROOT)"
  CARGO_TARGET_DIR="$GUARDRAIL_CACHE/tools-target" \
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$DENY_ROOT" --quiet
fi
export GUARDRAIL_CARGO_DENY="$DENY_ROOT/bin/cargo-deny"
