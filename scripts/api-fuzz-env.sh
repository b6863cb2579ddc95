#!/usr/bin/env bash
# A Python environment with schemathesis, which fuzzes the server's HTTP API against its
# OpenAPI description (the tests and `make fuzz-api`). Idempotent.
set -euo pipefail
venv="${1:-target/api-fuzz-venv}"
version="4.32.5"
if [[ -x "$venv/bin/st" ]] && "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
echo "installing schemathesis $version into $venv" >&2
/usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
