#!/usr/bin/env bash
# Runs the Autobahn fuzzingclient cases (kosoku) against a built sockway binary whose
# `$default` route echoes every message through an HTTP backend (echo_backend.py).
#
#   tests/autobahn/run.sh [kosoku args...]     e.g. tests/autobahn/run.sh -i '9.*'
#
# The binary is $SOCKWAY_BIN, default target/debug/sockway (build it first with
# `cargo build -p sockway`). kosoku (requirements.txt) goes into $REPO/.venv, created if
# missing. Reports go to $AUTOBAHN_REPORTS, default tests/autobahn/reports/ (index.json and
# one HTML/JSON file per case). All 517 cases run, the compression cases 12.* and 13.* with
# permessage-deflate on (sockway.toml). Exits 0 only when every case ran and is OK, NON-STRICT
# or INFORMATIONAL. Every process started here is stopped on exit, failures included.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"
here=tests/autobahn

venv="$repo_root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

sockway_bin="${SOCKWAY_BIN:-$repo_root/target/debug/sockway}"
if [[ ! -x "$sockway_bin" ]]; then
    echo "$here/run.sh: no sockway binary at $sockway_bin (run cargo build -p sockway)" >&2
    exit 1
fi
reports="${AUTOBAHN_REPORTS:-$repo_root/$here/reports}"

work="$(mktemp -d)"
pids=()
cleanup() {
    local pid
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 10 s for a line matching $2 in log file $1 and prints its last field; fails
# with the log when process $3 exits first or the line never comes.
wait_for_line() {
    local log="$1" pattern="$2" pid="$3" line=""
    for _ in $(seq 200); do
        line="$(grep -m1 -E "$pattern" "$log" || true)"
        if [[ -n "$line" ]]; then
            echo "${line##* }"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "$here/run.sh: no '$pattern' from process $pid; its output:" >&2
    cat "$log" >&2
    return 1
}

"$venv/bin/python" "$here/echo_backend.py" >"$work/backend.log" 2>&1 &
pids+=($!)
backend_url="$(wait_for_line "$work/backend.log" '^echo backend listening on ' "${pids[-1]}")"
backend="${backend_url#http://}"

sed "s/{backend}/$backend/" "$here/sockway.toml" >"$work/sockway.toml"
"$sockway_bin" serve --config "$work/sockway.toml" >"$work/sockway.log" 2>&1 &
pids+=($!)
ws_url="$(wait_for_line "$work/sockway.log" '^sockway listening on ws://' "${pids[-1]}")"
echo "== Autobahn fuzzingclient against $ws_url (echo backend on $backend_url)"

rm -rf "$reports"
started=$SECONDS
# kosoku exits 1 when a case fails; the verdicts are read from index.json below either way.
# It runs in the background so that a signal to this script interrupts `wait` at once and the
# EXIT trap stops kosoku too (bash runs traps only after a foreground command ends).
"$venv/bin/kosoku" -m fuzzingclient -p 2 -o "$reports" "$@" "$ws_url" &
pids+=($!)
wait "${pids[-1]}" || true
echo "== kosoku finished in $((SECONDS - started)) s"

"$venv/bin/python" - "$reports/index.json" <<'PY'
"""Counts the verdicts in kosoku's index.json and fails unless every case passed."""
import collections
import json
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
try:
    with open(sys.argv[1]) as file:
        index = json.load(file)
except (OSError, ValueError) as error:
    sys.exit(f"tests/autobahn/run.sh: no readable report at {sys.argv[1]}: {error}")
counts = collections.Counter()
failures = []
for agent, cases in index.items():
    for case_id, result in cases.items():
        behavior, close = result["behavior"], result["behaviorClose"]
        counts[behavior] += 1
        if behavior not in PASSING or close not in PASSING:
            failures.append(f"  {case_id}: {behavior} / close {close}")
if not counts:
    sys.exit("tests/autobahn/run.sh: the report has no cases")
key = lambda case: [int(part) for part in case.split(":")[0].strip().split(".")]
print("== Autobahn verdicts: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
if failures:
    print(f"== {len(failures)} cases did not pass:")
    print("\n".join(sorted(failures, key=key)))
    sys.exit(1)
PY
