#!/usr/bin/env bash
# Runs the packaging tests: the container image (built offline with podman, run from its
# exported files), the compose file, the Kubernetes manifests, the Prometheus rules and the
# Grafana dashboard (tests/packaging/test_*.py).
#
#   tests/packaging/run.sh [pytest args...]
#
# The binary is $SOCKWAY_BIN, default target/debug/sockway (build it first with
# `cargo build -p sockway`). As root, installs what is missing from Debian (without
# recommends): podman, prometheus (for promtool), redis-server, iproute2 and util-linux
# (ip, unshare, nsenter). Python dependencies go into $REPO/.venv, created if missing.
# Exits with pytest's status; "no tests collected" (5) counts as a failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "tests/packaging/run.sh: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

venv="$repo_root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/compat/requirements.txt -r tests/packaging/requirements.txt

export SOCKWAY_BIN="${SOCKWAY_BIN:-$repo_root/target/debug/sockway}"
if [[ ! -x "$SOCKWAY_BIN" ]]; then
    echo "tests/packaging/run.sh: no sockway binary at $SOCKWAY_BIN (run cargo build -p sockway)" >&2
    exit 1
fi

status=0
"$venv/bin/python" -m pytest tests/packaging -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "tests/packaging/run.sh: pytest collected no tests" >&2
    status=1
fi
exit "$status"
