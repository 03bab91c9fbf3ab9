# Sourced by tests/run.sh: the independent Sigstore signer of the bundle tests
# (tests/e2e/tests/signatures_bundles.rs): sigstore-js (@sigstore/sign builds DSSE
# bundles with a key signer, @sigstore/oci attaches them as OCI referrers, writing the
# referrers tag schema where the registry has no referrers API; @sigstore/mock is the
# Fulcio and Rekor of keyless signing), pinned in
# tests/e2e/signers/package.json, installed once with npm into the cache.
# Exports GUARDRAIL_SIGSTORE_JS (its node_modules).
# Node 20 (nodesource) ships npm; Debian's npm package would conflict with it.
command -v npm >/dev/null || apt_need nodejs npm
SIGSTORE_JS="$GUARDRAIL_CACHE/sigstore-js"
if ! cmp -s tests/e2e/signers/package.json "$SIGSTORE_JS/package.json" \
  || [ ! -d "$SIGSTORE_JS/node_modules/@sigstore/oci" ]; then
  log "npm install sigstore-js into $SIGSTORE_JS"
  mkdir -p "$SIGSTORE_JS"
  cp tests/e2e/signers/package.json "$SIGSTORE_JS/package.json"
  (cd "$SIGSTORE_JS" && npm install --silent --no-audit --no-fund >/dev/null)
fi
export GUARDRAIL_SIGSTORE_JS="$SIGSTORE_JS/node_modules"
