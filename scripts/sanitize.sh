#!/usr/bin/env bash
# scripts/sanitize.sh [--tsan] [meson test args]
# ASan+UBSan: configures build-san (g++, -Db_sanitize=address,undefined) and runs the whole suite.
# --tsan: build-tsan (-Db_sanitize=thread) running the concurrency suites (fd_bo, proto, transports,
# reliability). UBSan reports fail the run (halt_on_error).
set -euo pipefail
FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$FDNC_ROOT/scripts/sanitize_common.sh"
fdnc_san_install meson ninja-build g++ pkg-config libdrm-dev zlib1g-dev catch2 libcli11-dev nlohmann-json3-dev
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
if [[ "${1:-}" == "--tsan" ]]; then
  shift
  dir="$FDNC_ROOT/build-tsan"
  [[ -f "$dir/build.ninja" ]] || meson setup "$dir" "$FDNC_ROOT" --wrap-mode=nodownload \
    --buildtype=debugoptimized -Db_sanitize=thread -Dbench=false
  ninja -C "$dir" -j2
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1}"
  exec meson test -C "$dir" --print-errorlogs --suite fd_bo --suite proto --suite transports --suite reliability "$@"
fi
dir="$FDNC_ROOT/build-san"
[[ -f "$dir/build.ninja" ]] || meson setup "$dir" "$FDNC_ROOT" --wrap-mode=nodownload \
  --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
ninja -C "$dir" -j2
exec meson test -C "$dir" --print-errorlogs "$@"
