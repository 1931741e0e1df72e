#!/usr/bin/env bash
# fuzz-smoke: run one libFuzzer target over its seed corpus, then a short bounded run (CI).
# usage: smoke.sh <fuzzer> <seed dir> <dict or -> <seconds>
# New inputs go to a temporary corpus (the seed dir stays as generated); a crash leaves its
# reproducer in the build directory and fails the test.
set -euo pipefail
fuzzer="$1" seeds="$2" dict="$3" secs="$4"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
args=(-max_total_time="$secs" -runs=10000000 -timeout=10 -rss_limit_mb=2048 -max_len=65536
      -print_final_stats=1 -artifact_prefix="$(dirname "$fuzzer")/crash-$(basename "$fuzzer")-")
if [[ "$dict" != "-" ]]; then args+=(-dict="$dict"); fi
exec "$fuzzer" "${args[@]}" "$work" "$seeds"
