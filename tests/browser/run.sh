#!/usr/bin/env bash
# Runs the real-browser tests against the real sockway binary, in headless Chromium driven by
# playwright-core: examples/chat (chat.test.mjs: two pages chatting, and a page resuming its
# connection with clients/js/sockway-resume.js after a cut TCP connection and after the browser's
# offline mode), the web console (console.test.mjs), and access
# control on $connect (access.test.mjs: a presigned URL, an API key in the query string), wss://
# across TLS record boundaries (tls.test.mjs: Chromium, and Node's ws); and,
# without a browser, clients/js/sockway-resume.js under Node (resume-client.test.mjs).
#
#   tests/browser/run.sh [node --test args...]
#
# The binary is $SOCKWAY_BIN, default target/debug/sockway (build it first with
# `cargo build -p sockway`). Installs what is missing: Debian's chromium (needs root and the
# Debian archive) when /usr/bin/chromium is absent, and playwright-core and ws (a WebSocket for
# Node, resume-client.test.mjs) from package-lock.json when they are absent. Playwright's own browser download is never used.
# Screenshots and process logs go to tests/browser/artifacts/ (with UPDATE_DOCS_SCREENSHOT=1,
# console.test.mjs also refreshes docs/console.png).
# Exits with the test runner's status; a run in which no test ran counts as a failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

if [[ ! -x /usr/bin/chromium ]]; then
    echo "tests/browser/run.sh: installing Debian's chromium"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

if [[ ! -d tests/browser/node_modules/playwright-core || ! -d tests/browser/node_modules/ws ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

export SOCKWAY_BIN="${SOCKWAY_BIN:-$repo_root/target/debug/sockway}"
if [[ ! -x "$SOCKWAY_BIN" ]]; then
    echo "tests/browser/run.sh: no sockway binary at $SOCKWAY_BIN (run cargo build -p sockway)" >&2
    exit 1
fi

# resume-client.test.mjs runs clients/js/sockway-resume.js on Node's own WebSocket: built in
# from Node 22, behind a flag in Node 20 (from 20.10) and 21.
node_flags=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)'; then
    node_flags+=(--experimental-websocket)
fi

# The spec report goes to the terminal; a TAP copy is kept to count the tests that ran.
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
status=0
node "${node_flags[@]}" --test \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "$@" tests/browser/ || status=$?
if [[ $status -eq 0 ]] && ! grep -Eq '^# pass [1-9]' "$tap"; then
    echo "tests/browser/run.sh: no test ran (did node --test find any, or were all skipped?)" >&2
    status=1
fi
exit "$status"
