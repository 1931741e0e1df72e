#!/usr/bin/env bash
# scripts/sanitize.sh [--tsan] [meson test args]
# ASan+UBSan: configures build-san (g++, -Db_sanitize=address,undefined) and runs the whole suite.
# --tsan: build-tsan (-Db_sanitize=thread), builds only what the concurrency suites (fd_bo, virtio_proto,
# transports, reliability) run, and runs them.
# Sanitizer builds use -O1: the usual choice for ASan/TSan (readable stacks, a fraction of -O2's
# compile time, which dominates here). UBSan and TSan reports fail the run (halt_on_error).
set -euo pipefail
FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$FDNC_ROOT/scripts/sanitize_common.sh"
fdnc_san_install meson ninja-build g++ pkg-config libdrm-dev zlib1g-dev catch2 libcli11-dev nlohmann-json3-dev
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# The build outputs the tests of the given suites need (their binaries and `depends`), from meson's
# own introspection, so adding a test never means editing this list.
outputs_for_suites() {
  local dir="$1"; shift
  meson introspect --tests --targets "$dir" | python3 -c '
import json, os, sys
dir, suites = sys.argv[1], set("fdnc:" + s for s in sys.argv[2:])
info = json.load(sys.stdin)
files = {t["id"]: t["filename"] for t in info["targets"]}
for t in info["tests"]:
    if suites & set(t["suite"]):
        for dep in t["depends"]:
            for f in files.get(dep, []):
                print(os.path.relpath(f, dir))
' "$dir" "$@" | sort -u
}

if [[ "${1:-}" == "--tsan" ]]; then
  shift
  dir="$FDNC_ROOT/build-tsan"
  suites=(fd_bo virtio_proto transports reliability)
  [[ -f "$dir/build.ninja" ]] || meson setup "$dir" "$FDNC_ROOT" --wrap-mode=nodownload \
    -Doptimization=1 -Ddebug=true -Db_sanitize=thread -Dbench=false
  mapfile -t targets < <(outputs_for_suites "$dir" "${suites[@]}")
  ninja -C "$dir" -j2 "${targets[@]}"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
  suite_args=()
  for s in "${suites[@]}"; do suite_args+=(--suite "$s"); done
  exec meson test -C "$dir" --no-rebuild --print-errorlogs "${suite_args[@]}" "$@"
fi
dir="$FDNC_ROOT/build-san"
[[ -f "$dir/build.ninja" ]] || meson setup "$dir" "$FDNC_ROOT" --wrap-mode=nodownload \
  -Doptimization=1 -Ddebug=true -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
ninja -C "$dir" -j2
# realhost preloads the (here instrumented) drm_shim into the uninstrumented virgl_test_server,
# which ASan refuses; the normal suite runs it.
exec meson test -C "$dir" --no-rebuild --print-errorlogs --no-suite realhost "$@"
