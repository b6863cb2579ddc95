# Multistreamer server image. A straight mirror of the Makefile: build stage = `make build`'s
# packages + cargo build --release; runtime stage = the packages `scripts/deps.sh run`
# installs. (No Docker engine runs where this project is developed, so the file is kept
# deliberately simple and in step with the Makefile rather than tested here.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config ca-certificates clang libclang-dev \
    libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p multistreamer-server -p multistreamer-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/multistreamer-server /usr/local/bin/
COPY --from=build /src/target/release/multistreamer /usr/local/bin/
VOLUME ["/var/lib/multistreamer"]
ENV MULTISTREAMER_DATA_DIR=/var/lib/multistreamer \
    MULTISTREAMER_HTTP=0.0.0.0:8080 \
    MULTISTREAMER_RTMP=0.0.0.0:1935
EXPOSE 1935 8554 8080
ENTRYPOINT ["/usr/local/bin/multistreamer-server"]
