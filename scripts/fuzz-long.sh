#!/usr/bin/env bash
# `make fuzz-long` (and the short `make fuzz`): every fuzz target until it has run
# MULTISTREAMER_FUZZ_RUNS inputs (10 M) or MULTISTREAMER_FUZZ_SECONDS (30 min) have passed,
# starting from the seed corpus kept in fuzz/corpus/TARGET (read only) and a working corpus
# under target/fuzz-long/corpus/TARGET (kept between runs). Prints one line per target:
# executions, seconds, coverage, corpus; a crash stops nothing but fails the run (its input
# is in fuzz/artifacts/TARGET: make it a regression test). MULTISTREAMER_FUZZ_KEEP=1 copies
# each minimized working corpus back into fuzz/corpus (small inputs only).
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
runs="${MULTISTREAMER_FUZZ_RUNS:-10000000}"
seconds="${MULTISTREAMER_FUZZ_SECONDS:-1800}"
targets="${MULTISTREAMER_FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
out="${MULTISTREAMER_FUZZ_OUT:-../target/fuzz-long}"
mkdir -p "$out"
failed=0
printf '%-18s %12s %8s %10s %8s %8s %s\n' target executions seconds exec/s cov ft corpus | tee "$out/summary.txt"
for t in $targets; do
  work="$out/corpus/$t"
  mkdir -p "$work" "corpus/$t"
  start=$(date +%s)
  if ! cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
      -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 > "$out/$t.log" 2>&1; then
    echo "$t: FAILED (crash or error): $out/$t.log, input in fuzz/artifacts/$t" | tee -a "$out/summary.txt"
    failed=1
    continue
  fi
  took=$(( $(date +%s) - start ))
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$out/$t.log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$out/$t.log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<< "$last")
  printf '%-18s %12s %8s %10s %8s %8s %s\n' "$t" "$execs" "$took" "$rate" "$cov" "$ft" "$corp" | tee -a "$out/summary.txt"
  if [[ "${MULTISTREAMER_FUZZ_KEEP:-0}" == 1 ]]; then
    # the smallest corpus with the same coverage (in place), then inputs up to 4 KB into
    # the seeds
    cargo +nightly fuzz cmin "$t" "$work" -- -max_len=65536 > "$out/$t.cmin.log" 2>&1 || true
    find "$work" -type f -size -4k -exec cp {} "corpus/$t/" \;
  fi
done
exit $failed
