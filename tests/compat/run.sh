#!/usr/bin/env bash
# Runs the Python compatibility suite against a built sockway binary.
#
#   tests/compat/run.sh [pytest args...]
#
# The binary is $SOCKWAY_BIN, default target/debug/sockway (build it first with
# `cargo build -p sockway`). Dependencies go into $REPO/.venv, created if missing.
# Exits with pytest's status; "no tests collected" (5) counts as a failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

venv="$repo_root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/compat/requirements.txt

export SOCKWAY_BIN="${SOCKWAY_BIN:-$repo_root/target/debug/sockway}"
if [[ ! -x "$SOCKWAY_BIN" ]]; then
    echo "tests/compat/run.sh: no sockway binary at $SOCKWAY_BIN (run cargo build -p sockway)" >&2
    exit 1
fi

status=0
"$venv/bin/python" -m pytest tests/compat -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "tests/compat/run.sh: pytest collected no tests" >&2
    status=1
fi
exit "$status"
