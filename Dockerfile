# Multistreamer server image. A mirror of the Makefile: the build stage installs
# `make build`'s packages and runs cargo build --release; the runtime stage installs the
# packages `scripts/deps.sh run` installs.
#
#   podman build -t multistreamer .            (or docker build)
#
# `make image` builds the `prebuilt` target instead (the binaries of the host's
# `cargo build --release`, on a Debian base made with debootstrap) and runs the smoke test:
# the server starts in the container, /healthz answers, a publish reaches nginx-rtmp.

# the runtime's base; `make image` points it at a local debootstrap image
ARG RUNTIME_BASE=debian:bookworm-slim

# FFmpeg's libraries (libavdevice reads the capture's virtual screen); for webinar capture
# and render: chromium on a virtual screen and the chat's fonts (Cyrillic, colour emoji)
FROM ${RUNTIME_BASE} AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 \
    xvfb chromium fonts-dejavu-core fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*
VOLUME ["/var/lib/multistreamer"]
ENV MULTISTREAMER_DATA_DIR=/var/lib/multistreamer \
    MULTISTREAMER_HTTP=0.0.0.0:8080 \
    MULTISTREAMER_RTMP=0.0.0.0:1935
# RTMP, RTSP, HTTP (and WHIP's offers); SRT and WHIP media over UDP
EXPOSE 1935 8554 8080 9000/udp 8189/udp
ENTRYPOINT ["/usr/local/bin/multistreamer-server"]

# the host's release build (`cargo build --release -p multistreamer-server -p multistreamer-cli`)
FROM runtime AS prebuilt
COPY target/release/multistreamer-server target/release/multistreamer /usr/local/bin/

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config ca-certificates clang libclang-dev libssl-dev \
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavdevice-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p multistreamer-server -p multistreamer-cli

# the default: built from source in the stage above
FROM runtime
COPY --from=build /src/target/release/multistreamer-server /src/target/release/multistreamer /usr/local/bin/
