#!/usr/bin/env bash
# Churn soak (issue #6 item 7); not run in CI.
#
#   tests/soak/run.sh [--minutes N] [--mode single|cluster|both] [--clients N] [--push-rate R]
#                     [--warmup S] [--report FILE]
#   tests/soak/run.sh --mode resume [--seconds S] [--clients N] [--push-rate R] [--strict]
#                     [--report FILE]
#
# Starts on loopback what it needs (a Python backend, one sockway node or three on a private
# redis-server), runs thousands of short-lived clients against it for N minutes per mode
# (default 10, both modes), SIGKILLs one of three nodes midway in cluster mode, then runs a
# 3-minute repeat round (the baseline of the RSS check is the end of the main phase), then checks:
# one $disconnect per accepted connection, every acknowledged push received by its live
# reader, RSS back to baseline, no panics. Writes tests/soak/REPORT.md (or --report) and exits
# non-zero if a check fails. Every process it starts is stopped on exit.
# --mode resume (resume.py; not part of `both`): three nodes with [resume] on one redis-server,
# clients (default 300) that keep dropping their sockets without a close frame and resuming on
# a random node, posts to them through random nodes, one node SIGKILLed halfway through a run
# of S seconds (default 150); checks that every post answered 200 arrived once and in its
# sender's order (or, for a connection the killed node held whose resume was refused, that its
# one $disconnect arrived; --strict allows that only for connections open on the killed node,
# not suspended ones), one $connect and one $disconnect per
# connection, RSS bounded, no panics. It replaces only the "Resume mode" section of the report.
# Binary: $SOCKWAY_BIN, default target/release/sockway. Python: $REPO/.venv (tests/compat/run.sh).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
minutes=10
mode=both
clients=""
push_rate=""
warmup=45
seconds=150
strict=()
report="$repo/tests/soak/REPORT.md"
cmdline="tests/soak/run.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --mode) mode="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --push-rate) push_rate="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --report) report="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --strict) strict=(--strict); shift ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$mode" in single) modes=(single) ;; cluster) modes=(cluster) ;; both) modes=(single cluster) ;;
    resume) modes=(resume) ;;
    *) echo "run.sh: --mode single|cluster|both|resume" >&2; exit 2 ;; esac

bin="${SOCKWAY_BIN:-$repo/target/release/sockway}"
py="$repo/.venv/bin/python"
[[ -x "$bin" ]] || { echo "run.sh: no binary at $bin (cargo build --release -p sockway)" >&2; exit 1; }
[[ -x "$py" ]] || { echo "run.sh: no venv at $repo/.venv (see tests/compat/run.sh)" >&2; exit 1; }
ulimit -n 20000 2>/dev/null || true

work="$(mktemp -d /tmp/sockway-soak.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
    for _ in $(seq 1 100); do
        if "$py" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "run.sh: $1 did not come up" >&2; return 1
}

commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$repo" status --porcelain 2>/dev/null | grep -v '^??' | wc -l || true)"
started="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
status=0
sections=()

for m in "${modes[@]}"; do
    dir="$work/$m"; mkdir -p "$dir"
    bport="$(free_port)"
    "$py" tests/soak/soak.py backend --port "$bport" --out "$dir/events.jsonl" >"$dir/backend.log" 2>&1 &
    backend_pid=$!; pids+=("$backend_pid")
    cluster_toml=""
    resume_toml=""
    if [[ "$m" == resume ]]; then
        resume_toml='[resume]
window = "10s"'
    fi
    if [[ "$m" == cluster || "$m" == resume ]]; then
        n=3
        rport="$(free_port)"
        redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" >"$dir/redis.log" 2>&1 &
        pids+=("$!")
        for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
        kill_arg=(--kill-node 1)
        default_clients=2400
    else
        n=1
        kill_arg=()
        default_clients=2000
    fi
    node_addrs=(); node_pids=(); logs=()
    for i in $(seq 0 $((n - 1))); do
        port="$(free_port)"
        if [[ "$m" == cluster || "$m" == resume ]]; then
            cluster_toml="[cluster]
redis_url = \"redis://127.0.0.1:$rport\"
node_id = \"node-$i\"
node_timeout = \"3s\""
        fi
        cat >"$dir/node$i.toml" <<EOF
[gateway]
listen = "127.0.0.1:$port"
stage = "soak"

[limits]
heartbeat_interval = "2s"
max_connections_per_ip = 0
max_connections = 15000

[throttling]
connect_rate_limit = 0
connect_rate_limit_per_ip = 0
management_rate_limit = 0

[access_log]
enabled = false

[routes."\$connect"]
integration = "backend"

[routes."\$disconnect"]
integration = "backend"

[routes."\$default"]
integration = "backend"
route_response = true

[integrations.backend]
type = "http"
uri = "http://127.0.0.1:$bport/events"

$cluster_toml

$resume_toml
EOF
        "$bin" serve --config "$dir/node$i.toml" >"$dir/node$i.stdout" 2>"$dir/node$i.stderr" &
        p=$!; pids+=("$p"); node_pids+=("$p")
        node_addrs+=("127.0.0.1:$port"); logs+=("$dir/node$i.stderr")
        wait_http "http://127.0.0.1:$port/health"
    done
    echo "== mode $m: ${n} node(s) ${node_addrs[*]}, backend :$bport, work dir $dir"
    if [[ "$m" == resume ]]; then
        "$py" tests/soak/resume.py load --nodes "$(IFS=,; echo "${node_addrs[*]}")" \
            --pids "$(IFS=,; echo "${node_pids[*]}")" --seconds "$seconds" \
            --clients "${clients:-300}" --push-rate "${push_rate:-100}" "${kill_arg[@]}" \
            --out "$dir/load.json" 2>&1 | tee "$dir/load.log"
        kill -TERM "$backend_pid"; wait "$backend_pid" 2>/dev/null || true
        rc=0
        "$py" tests/soak/resume.py check --events "$dir/events.jsonl" --load "$dir/load.json" \
            --logs "$(IFS=,; echo "${logs[*]}")" --md "$dir/section.md" "${strict[@]}" || rc=$?
        [[ $rc -eq 0 ]] || status=1
        sections+=("$dir/section.md")
        cleanup
        continue
    fi
    "$py" tests/soak/soak.py load --nodes "$(IFS=,; echo "${node_addrs[*]}")" \
        --pids "$(IFS=,; echo "${node_pids[*]}")" --backend-pid "$backend_pid" \
        --minutes "$minutes" --warmup "$warmup" --clients "${clients:-$default_clients}" \
        --push-rate "${push_rate:-200}" "${kill_arg[@]}" --out "$dir/load.json" 2>&1 | tee "$dir/load.log"
    kill -TERM "$backend_pid"; wait "$backend_pid" 2>/dev/null || true
    rc=0
    "$py" tests/soak/soak.py check --mode "$m" --events "$dir/events.jsonl" --load "$dir/load.json" \
        --logs "$(IFS=,; echo "${logs[*]}")" --md "$dir/section.md" || rc=$?
    [[ $rc -eq 0 ]] || status=1
    sections+=("$dir/section.md")
    cleanup
done

if [[ "$mode" == resume ]]; then
    # Only the "Resume mode" section of the report is replaced (appended when missing); the
    # churn modes' results stay.
    section="$work/resume-report.md"
    {
        echo "## Resume mode"
        echo
        echo "- date: $started (finished $(date -u '+%H:%M:%S UTC'))"
        echo "- commit: $commit$([[ "$dirty" != 0 ]] && echo " (working tree had $dirty modified tracked files)")"
        echo "- binary: \`${bin#"$repo"/}\`, built $(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')"
        echo "- command: \`$cmdline\`"
        echo "- machine: $(nproc) cores (shared), open-files limit $(ulimit -n)"
        echo "- overall: $([[ $status -eq 0 ]] && echo '**PASS**' || echo '**FAIL**')"
        echo
        cat "${sections[0]}"
    } >"$section"
    touch "$report"
    "$py" - "$report" "$section" <<'PY'
import re, sys
report, section = sys.argv[1], open(sys.argv[2]).read()
text = open(report).read()
start = text.find("## Resume mode\n")
if start < 0:
    anchor = text.find("## How the soak works")
    start = end = anchor if anchor >= 0 else len(text)
else:
    following = re.search(r"^## ", text[start + 1:], re.M)
    end = start + 1 + following.start() if following else len(text)
open(report, "w").write(text[:start] + section.rstrip("\n") + "\n\n" + text[end:])
PY
    echo "report: $report (section \"Resume mode\")"
    if [[ $status -eq 0 ]]; then rm -rf "$work"; else echo "logs kept in $work"; fi
    exit "$status"
fi

# The "Resume mode" section of the report (run.sh --mode resume) is carried over.
previous_resume="$work/previous-resume.md"
"$py" - "$report" >"$previous_resume" <<'PY'
import re, sys
try:
    text = open(sys.argv[1]).read()
except OSError:
    sys.exit(0)
start = text.find("## Resume mode\n")
if start >= 0:
    following = re.search(r"^## ", text[start + 1:], re.M)
    print(text[start:start + 1 + following.start() if following else len(text)].rstrip("\n") + "\n")
PY
{
    echo "# Churn soak report"
    echo
    echo "Generated by \`tests/soak/run.sh\` (issue #6 item 7); see the definitions at the end."
    echo
    echo "- date: $started (finished $(date -u '+%H:%M:%S UTC'))"
    echo "- commit: $commit$([[ "$dirty" != 0 ]] && echo " (working tree had $dirty modified tracked files)")"
    echo "- binary: \`${bin#"$repo"/}\`, built $(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')"
    echo "- command: \`$cmdline\`"
    echo "- duration: main phase $minutes min per mode, plus a ${warmup} s warm-up, drain and settle; modes: ${modes[*]}"
    echo "- machine: $(nproc) cores (shared), open-files limit $(ulimit -n)"
    echo "- overall: $([[ $status -eq 0 ]] && echo '**PASS**' || echo '**FAIL**')"
    echo
    echo "## Results"
    echo
    for s in "${sections[@]}"; do cat "$s"; echo; done
    cat "$previous_resume"
    cat "$repo/tests/soak/DEFINITIONS.md"
} >"$report"
echo "report: $report"
if [[ $status -eq 0 ]]; then rm -rf "$work"; else echo "logs kept in $work"; fi
exit "$status"
