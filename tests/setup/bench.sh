# Sourced by tests/run.sh: what the smoke run of bench/run needs
# (tests/e2e/tests/bench_smoke.rs): Debian's nginx, HAProxy and valgrind, oha from
# crates.io and the plotting venv (both pinned by bench/run, installed once into the
# cache by `bench/run --setup`).
apt_need nginx-light haproxy valgrind
# Debian starts both as system services on install; the benchmarks start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx haproxy >/dev/null 2>&1 || true; fi
bench/run --setup
export OHA="$GUARDRAIL_CACHE/tools/oha/bin/oha"
