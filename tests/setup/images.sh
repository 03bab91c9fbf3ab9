# Sourced by tests/run.sh: what the image test (tests/e2e/tests/images.rs) needs to build,
# inspect and unpack images without a Docker engine or registry access: buildah
# (images/build.sh: vfs storage, chroot isolation), skopeo (image configs, copying to
# an OCI layout), umoci (unpacking a root filesystem), coreutils' chroot.
apt_need buildah skopeo umoci
