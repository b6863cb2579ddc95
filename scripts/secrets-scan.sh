#!/usr/bin/env bash
# After the test suite: no secret a test handed to the programs under test appears in their
# logs, and none but a stream's own key appears in an API answer. The tests note the
# secrets and keep the logs and answers under target/secrets-scan (test-support's
# `secrets` module). Exit 1 with each finding.
set -euo pipefail
dir="${1:-target/secrets-scan}"
if [[ ! -d "$dir/secrets" ]]; then
  echo "secrets scan: nothing noted under $dir (no test ran?)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat "$dir"/secrets/*.txt | sort -u > "$work/all"
cut -f2 "$work/all" | sort -u > "$work/every"
grep -P '^credential\t' "$work/all" | cut -f2 | sort -u > "$work/credentials" || true
logs=$(find "$dir/logs" -type f 2>/dev/null | wc -l)
answers=$(cat "$dir"/responses/*.txt 2>/dev/null | grep -c '^=== ' || true)
echo "secrets scan: $(wc -l < "$work/every") secrets ($(wc -l < "$work/credentials") credentials), $logs logs, $answers API answers" >&2
found=0
# grep -F with a pattern file matches them all in one pass
if [[ -d "$dir/logs" ]] && grep -rFo -f "$work/every" "$dir/logs" > "$work/in-logs"; then
  echo "secrets in logs:" >&2
  sort -u "$work/in-logs" | head -50 >&2
  found=1
fi
if [[ -d "$dir/responses" && -s "$work/credentials" ]] && grep -rFo -f "$work/credentials" "$dir/responses" > "$work/in-answers"; then
  echo "credentials in API answers:" >&2
  sort -u "$work/in-answers" | head -50 >&2
  found=1
fi
if [[ $found == 0 ]]; then
  echo "secrets scan: clean" >&2
fi
exit $found
