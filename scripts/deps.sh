#!/usr/bin/env bash
# Installs the system packages Multistreamer needs, only those that are missing.
# Idempotent; safe to run on every `make` invocation. Debian/Ubuntu (apt).
#
#   scripts/deps.sh run    packages needed to build and run
#   scripts/deps.sh test   plus the real peers the tests talk to
set -euo pipefail

profile="${1:-run}"

# FFmpeg's libraries (in-process transcoding through ffmpeg-next) and clang for its bindings;
# OpenSSL's headers for WHIP's DTLS;
# for webinar capture and render: chromium on a virtual screen (xvfb, read through
# libavdevice) and the fonts of the rendered chat (Cyrillic, colour emoji).
run_pkgs=(ca-certificates pkg-config gcc libc6-dev clang libclang-dev libssl-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavdevice-dev
  xvfb chromium fonts-dejavu-core fonts-noto-color-emoji)
test_pkgs=(ffmpeg nginx libnginx-mod-rtmp libnginx-mod-stream openssl procps python3 python3-venv util-linux postgresql
  gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0)

pkgs=("${run_pkgs[@]}")
if [[ "$profile" == "test" || "$profile" == "bench" ]]; then
  pkgs+=("${test_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi

echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# nginx's package scripts try to start the service; on machines without an init system
# that fails harmlessly but noisily, so allow it to fail and verify the binaries instead.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || true
for p in "${missing[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "failed to install $p" >&2
    exit 1
  fi
done
# Do not leave a system nginx running on port 80; the tests start their own instances.
if [[ " ${missing[*]} " == *" nginx "* ]] && command -v service >/dev/null 2>&1; then
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi
# Nor a system PostgreSQL: the scale-out tests start throwaway clusters of their own.
if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v service >/dev/null 2>&1; then
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
