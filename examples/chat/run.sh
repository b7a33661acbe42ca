#!/usr/bin/env bash
# Builds sockway, starts the chat backend and the gateway, and stops both on Ctrl-C.
# Run from anywhere: paths are resolved from the repository root.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

# Must match examples/chat/sockway.toml.
gateway_addr="127.0.0.1:8080"
backend_port="8081"

for tool in cargo python3; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done

cargo build --release -p sockway

backend_pid=""
gateway_pid=""

# Sends SIGTERM to PID and waits up to about 10 s for it to exit, then SIGKILL.
stop_process() {
    local pid=$1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "run.sh: process $pid ignored SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    trap - INT TERM EXIT
    # Stop the gateway first so its $disconnect events still reach the backend.
    stop_process "$gateway_pid"
    stop_process "$backend_pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 examples/chat/backend.py \
    --port "$backend_port" \
    --callback-url "http://$gateway_addr/dev" \
    --ws-url "ws://$gateway_addr/dev" &
backend_pid=$!

target/release/sockway serve --config examples/chat/sockway.toml &
gateway_pid=$!

# Waits (up to about 10 s) until HOST:PORT accepts TCP connections and PID is still alive.
wait_for_port() {
    local host=$1 port=$2 pid=$3 name=$4
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited" >&2; exit 1; }
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            # Another program may hold the port: make sure ours did not exit meanwhile.
            kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited" >&2; exit 1; }
            return 0
        fi
        sleep 0.1
    done
    echo "run.sh: $name is not listening on $host:$port" >&2
    exit 1
}
wait_for_port 127.0.0.1 "$backend_port" "$backend_pid" backend.py
wait_for_port "${gateway_addr%:*}" "${gateway_addr#*:}" "$gateway_pid" sockway

echo
echo "Chat is running. Open http://127.0.0.1:$backend_port/ in two browser tabs."
echo "Press Ctrl-C to stop."

# Return as soon as either process exits; the EXIT trap stops the other one.
wait -n
