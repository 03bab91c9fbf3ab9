#!/usr/bin/env bash
# Builds the guardrail-webhook and guardrail-sidecar images daemonless, from their
# Dockerfiles (webhook/Dockerfile, sidecar/Dockerfile), with Debian's buildah: vfs
# storage, chroot isolation; the Dockerfiles only COPY, so nothing runs inside.
#
#   images/build.sh [--binaries DIR] [--push REGISTRY/PREFIX] [--insecure] [--base IMAGE]
#
#   --binaries DIR   where guardrail-webhook and guardrail-sidecar are (default
#                    target/release; the suite passes target/debug)
#   --push R/P       push to R/P/guardrail-webhook:VERSION and R/P/guardrail-sidecar:VERSION
#                    and print "<name> <repository>@<digest>" per image on stdout
#   --insecure       plain-HTTP registry (tests)
#   --base IMAGE     base image (default: the Dockerfiles' pinned distroless digest, which
#                    needs registry access). Without registry access pass `--base local`:
#                    a distroless-style base is assembled from Debian packages (libc6,
#                    libgcc-s1, ca-certificates; a nonroot passwd entry, uid 65532).
#
# Storage lives in $GUARDRAIL_CACHE/images (default ~/.cache/guardrail/images).
set -euo pipefail
cd "$(dirname "$0")/.."
BINARIES=target/release
PUSH=""
TLS_VERIFY=true
BASE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) BINARIES=$2; shift 2 ;;
    --push) PUSH=$2; shift 2 ;;
    --insecure) TLS_VERIFY=false; shift ;;
    --base) BASE=$2; shift 2 ;;
    *) echo "images/build.sh: unknown argument $1 (see the header of this file)" >&2; exit 2 ;;
  esac
done
for tool in buildah dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "images/build.sh: $tool is missing (apt-get install buildah)" >&2; exit 2; }
done
CACHE="${GUARDRAIL_CACHE:-$HOME/.cache/guardrail}/images"
mkdir -p "$CACHE"
BUILDAH=(buildah --storage-driver vfs --root "$CACHE/storage" --runroot "$CACHE/run")
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' webhook/Cargo.toml | head -n1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)

# A distroless-style base from Debian packages: what gcr.io/distroless/cc holds (glibc,
# libgcc, CA certificates, passwd/group with nonroot), no shell, no package manager.
local_base() {
  local name=localhost/guardrail-base:debian
  if "${BUILDAH[@]}" inspect --type image "$name" >/dev/null 2>&1; then
    echo "$name"; return
  fi
  local work; work=$(mktemp -d)
  (cd "$work" && apt-get download -q libc6 libgcc-s1 ca-certificates >&2)
  mkdir "$work/rootfs"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/rootfs"; done
  local root=$work/rootfs
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/locale"
  rm -f "$root"/usr/sbin/* "$root"/usr/bin/* 2>/dev/null || true
  # update-ca-certificates' bundle, made without running it.
  mkdir -p "$root/etc/ssl/certs"
  find "$root/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z | xargs -0 cat > "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  mkdir -p "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
  local ctr; ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy "$ctr" "$root" / >/dev/null
  "${BUILDAH[@]}" config --user 65532:65532 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ctr"
  "${BUILDAH[@]}" commit -q "$ctr" "$name" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  rm -rf "$work"
  echo "$name"
}

case "$BASE" in
  local) BASE=$(local_base) ;;
esac

for binary in guardrail-webhook guardrail-sidecar; do
  dir=${binary#guardrail-}
  [ -x "$BINARIES/$binary" ] || { echo "images/build.sh: $BINARIES/$binary is missing (cargo build first)" >&2; exit 2; }
  # The context is only the binary: nothing else of the tree reaches the image.
  context=$(mktemp -d)
  cp "$BINARIES/$binary" "$context/"
  args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
  [ -n "$BASE" ] && args+=(--build-arg "BASE=$BASE")
  tag="localhost/$binary:$VERSION"
  "${BUILDAH[@]}" bud -q --isolation chroot --layers=false "${args[@]}" \
    -f "$PWD/$dir/Dockerfile" -t "$tag" "$context" >&2
  rm -rf "$context"
  if [ -n "$PUSH" ]; then
    digestfile=$(mktemp)
    "${BUILDAH[@]}" push -q --tls-verify="$TLS_VERIFY" --digestfile "$digestfile" \
      "$tag" "docker://$PUSH/$binary:$VERSION" >&2
    echo "$binary $PUSH/$binary@$(cat "$digestfile")"
    rm -f "$digestfile"
  else
    echo "$binary $tag"
  fi
done
