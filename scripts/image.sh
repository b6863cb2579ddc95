#!/usr/bin/env bash
# `make image`: builds the container image with Debian's podman and runs its smoke test
# (the server starts in the container, /healthz answers, a publish reaches nginx-rtmp).
#
# No image registry is reachable where this project is built and tested, so the runtime
# base is made here with debootstrap from the Debian mirror apt already uses, and the
# image is the Dockerfile's `prebuilt` target (the host's release binaries on that base).
# The Dockerfile's default target builds from source on the official Rust image instead.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${MULTISTREAMER_IMAGE:-localhost/multistreamer:dev}"
base=localhost/multistreamer-debian:bookworm

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  apt-get update -q && apt-get install -y -q "${need[@]}"
fi

# Where this runs (a sandbox, cgroups v1 and v2 mixed), podman's defaults fail: crun
# refuses hybrid cgroups ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2") and raising RLIMIT_NOFILE/RLIMIT_NPROC is not permitted ("setrlimit
# `RLIMIT_NOFILE`: Operation not permitted"). runc with limits below the host's works; the
# smoke test's podman reads the same configuration.
mkdir -p target/image
cat > target/image/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$PWD/target/image/containers.conf"

if ! podman image exists "$base"; then
  # the mirror of the bookworm suite in apt's own sources (deb822 or one-line form)
  mirror=$(python3 - <<'PY'
import glob, re
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if "bookworm" in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
            print(fields["URIs"].split()[0]); raise SystemExit
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == "bookworm":
                print(parts[1]); raise SystemExit
    except FileNotFoundError:
        pass
PY
)
  [[ -n "$mirror" ]] || { echo "no Debian bookworm mirror in apt's sources" >&2; exit 1; }
  rootfs=target/image/rootfs
  rm -rf "$rootfs" && mkdir -p target/image
  echo "making the base image $base with debootstrap" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > target/image/debootstrap.log
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$rootfs"
fi

cargo build --release -p multistreamer-server -p multistreamer-cli
podman build --network host --pull=never --target prebuilt --build-arg RUNTIME_BASE="$base" -t "$image" .
podman image ls "$image"
MULTISTREAMER_IMAGE="$image" cargo test --release -p multistreamer-server --test api -- \
  --ignored --exact faults::the_container_image_serves_and_relays --nocapture
