#!/usr/bin/env bash
# scripts/stress.sh [--seed N] [--seconds N] [--threads N]: the iova-safety stress for longer.
# The seed is printed first; rerun with the same --seed to reproduce.
set -euo pipefail
FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FDNC_STRESS_SEED="${FDNC_STRESS_SEED:-$(date +%s)}" FDNC_STRESS_SECONDS="${FDNC_STRESS_SECONDS:-60}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seed) FDNC_STRESS_SEED="$2"; shift 2 ;;
    --seconds) FDNC_STRESS_SECONDS="$2"; shift 2 ;;
    --threads) export FDNC_STRESS_THREADS="$2"; shift 2 ;;
    *) echo "usage: scripts/stress.sh [--seed N] [--seconds N] [--threads N]" >&2; exit 2 ;;
  esac
done
export FDNC_STRESS_SEED FDNC_STRESS_SECONDS
build="${FDNC_BUILD:-$FDNC_ROOT/build}"
[[ -f "$build/build.ninja" ]] || meson setup "$build" "$FDNC_ROOT" --wrap-mode=nodownload
ninja -C "$build" -j2 tests/reliability/test_reliability
exec "$build/tests/reliability/test_reliability" "[stress]" -s
