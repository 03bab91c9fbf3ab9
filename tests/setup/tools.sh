# Sourced by tests/run.sh, which defines `apt_need`; idempotent.
# curl: the webhook's HTTP/2 413 test drives it as users do; prlimit (util-linux): the
# sidecar's out-of-descriptors test lowers a running process's RLIMIT_NOFILE.
apt_need curl util-linux
