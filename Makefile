# Multistreamer — the two commands:
#   make run    install what is missing, build, start the server (prints URL and first login)
#   make test   install what is missing (incl. test peers), check format/lints, run all tests
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= ./data
HTTP ?= 127.0.0.1:8080
RTMP ?= 0.0.0.0:1935
RTSP ?= 0.0.0.0:8554
SRT ?= 0.0.0.0:9000
# `make relay`: the command-line relay, e.g. make relay TO="rtmp://a.rtmp.youtube.com/live2/{key}"
LISTEN ?= rtmp://0.0.0.0:1935/live
TO ?=

.PHONY: run relay test deps deps-test build lint fmt fuzz-api soak image fuzz-long bench-relay bench-transcode bench-hls bench-rtsp bench-whip bench-render bench-capture fuzz clean

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test
	@scripts/api-fuzz-env.sh

build: deps
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-server

run: build
	./target/release/multistreamer-server --data-dir "$(DATA_DIR)" --http "$(HTTP)" --rtmp "$(RTMP)" --rtsp "$(RTSP)" --srt "$(SRT)"

relay: build
	./target/release/multistreamer relay --listen "$(LISTEN)" $(foreach t,$(TO),--to '$(t)')

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The RTMP-only library (no RTSP, HLS, libav) still builds cleanly.
	$(CARGO) clippy -p multistreamer-core --no-default-features -- -D warnings
	# The relay-only CLI (no libav, capture, render or monitor) still builds cleanly.
	$(CARGO) clippy -p multistreamer-cli --no-default-features --bins -- -D warnings
	# The fuzz targets compile on stable, so a library change cannot break them unseen.
	cd fuzz && CARGO_TARGET_DIR=../target/fuzz-check $(CARGO) check --bins --quiet

fmt:
	$(CARGO) fmt --all

POSTGRES_API_TESTS = --exact api_requires_a_session_and_csrf_validates_masks_keys_and_persists \
	publish_to_the_shown_url_goes_live_and_a_deleted_destination_stops \
	a_stream_ladder_feeds_a_destination_that_asked_for_a_rendition \
	recordings_are_listed_downloaded_with_ranges_and_deleted \
	a_stream_can_be_pushed_over_rtsp_or_pulled_from_a_camera \
	youtube_and_mtslink_broadcasts_from_connect_to_complete \
	a_webinar_capture_runs_from_the_api_and_its_files_are_served \
	repeated_failed_logins_are_rate_limited

# After the suite, no secret the tests handed over is in a log or (but a stream's own key)
# in an API answer: scripts/secrets-scan.sh.
test: deps-test lint
	rm -rf target/secrets-scan
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	# The API tests that cover every table once more on PostgreSQL (the scale-out store).
	MULTISTREAMER_TEST_DATABASE=postgres $(CARGO) test -p multistreamer-server --test api -- $(POSTGRES_API_TESTS)
	scripts/secrets-scan.sh

# The HTTP API fuzzed against its OpenAPI description for 30 minutes (make test runs a
# bounded version).
fuzz-api: deps-test
	MULTISTREAMER_API_FUZZ_SECONDS=$${MULTISTREAMER_API_FUZZ_SECONDS:-1800} $(CARGO) test -p multistreamer-server --test api -- --exact faults::the_api_holds_under_schemathesis --nocapture

# Publishers x 3 destinations (one killed and restarted at random) with API churn and an
# open dashboard, on a release build: 50 publishers for 30 minutes by default (make test
# runs 5 for 45 s). MULTISTREAMER_SOAK_PUBLISHERS / MULTISTREAMER_SOAK_SECONDS to change it.
soak: deps-test
	MULTISTREAMER_SOAK_PUBLISHERS=$${MULTISTREAMER_SOAK_PUBLISHERS:-50} MULTISTREAMER_SOAK_SECONDS=$${MULTISTREAMER_SOAK_SECONDS:-1800} \
	  $(CARGO) test --release -p multistreamer-server --test api -- --exact faults::soak::soak_publishers_destinations_and_api_churn --nocapture

bench-whip: deps-test
	$(CARGO) build --release -p multistreamer-server -p multistreamer-benches
	./target/release/bench-whip $(BENCH_ARGS)

bench-relay: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-relay $(BENCH_ARGS)

bench-transcode: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-transcode $(BENCH_ARGS)

bench-hls: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-hls $(BENCH_ARGS)

bench-rtsp: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-rtsp $(BENCH_ARGS)

bench-render: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-render $(BENCH_ARGS)

bench-capture: deps-test
	$(CARGO) build --release -p multistreamer-cli -p multistreamer-benches
	./target/release/bench-capture $(BENCH_ARGS)

# The container image, built with Debian's podman and smoke-tested (scripts/image.sh).
image: deps-test
	scripts/image.sh

# Fuzzing (a nightly toolchain and cargo-fuzz: cargo install cargo-fuzz): `make fuzz` runs
# each target for a minute; `make fuzz-long` until 10 M executions or 30 minutes each
# (scripts/fuzz-long.sh; figures in docs/benchmarks/reliability.md).
fuzz:
	MULTISTREAMER_FUZZ_SECONDS=60 scripts/fuzz-long.sh

fuzz-long:
	scripts/fuzz-long.sh

clean:
	$(CARGO) clean
