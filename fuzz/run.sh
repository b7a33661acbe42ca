#!/usr/bin/env bash
# Runs sockway's cargo-fuzz targets, one at a time, each for the given number of seconds, then
# minimises its corpus. Exits non-zero on the first crash and prints where the input is.
#
#   fuzz/run.sh [seconds-per-target] [target...]     (default: 300 seconds, every target)
#
# Builds with the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing
# `-Zsanitizer=address`, the only nightly flag it needs; libFuzzer itself builds with the
# system C++ compiler. Coverage instrumentation and debug assertions stay on. Runs under
# `nice -n 19` so builds sharing the machine keep their CPUs.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-300}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(route_selection integration_result sigv4 config management_path websocket proxy_header)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

fuzz=(cargo fuzz)
options=(--sanitizer none)
nice -n 19 "${fuzz[@]}" build "${options[@]}"

mkdir -p target/logs
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    arguments=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)
    if [ -f "dict/$target.dict" ]; then
        arguments+=(-dict="dict/$target.dict")
    fi
    log="target/logs/$target.log"
    echo "== $target: ${seconds}s (log: fuzz/$log)"
    if ! nice -n 19 "${fuzz[@]}" run "${options[@]}" "$target" "$corpus" -- "${arguments[@]}" >"$log" 2>&1; then
        grep -E "panicked at|^thread" -A 3 "$log" | head -20 || true
        crash="$(ls -t "artifacts/$target"/* 2>/dev/null | head -1 || true)"
        echo "== $target crashed; input: fuzz/${crash:-artifacts/$target (see $log)}"
        echo "   reproduce: cd fuzz && cargo fuzz run ${options[*]} $target ${crash:-}"
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^Done" "$log" || true
    # Minimise by edges, not hit counts, so the committed corpus stays at a few hundred files.
    nice -n 19 "${fuzz[@]}" cmin "${options[@]}" "$target" "$corpus" -- -use_counters=0 >>"$log" 2>&1
    echo "   corpus: $(find "$corpus" -type f | wc -l) files"
done
