#!/usr/bin/env bash
# fuzz/run.sh <target> <seconds> [extra libFuzzer args]
# fuzz/run.sh --smoke [meson test args]
# Builds the libFuzzer targets in build-fuzz (clang-14, ASan+UBSan, libraries coverage-instrumented
# with -fsanitize=fuzzer-no-link) and fuzzes one target for <seconds>, growing a persistent corpus
# in build-fuzz/fuzz/corpus/<target> (seeded from gen_seeds). Crash reproducers land in
# build-fuzz/fuzz/artifacts/. Targets: host_ccmd vtest_server guest_replies rd.
# --smoke builds every target and runs the fuzz-smoke suite (each target over its seeds, then a
# bounded 20 s run): what .ci/run does.
# Only this script needs clang: it installs clang-14 + its runtime (Debian packages) when missing.
set -euo pipefail
usage="usage: fuzz/run.sh <host_ccmd|vtest_server|guest_replies|rd> <seconds> [libFuzzer args] | --smoke"
if [[ $# -lt 1 || ( "$1" != "--smoke" && $# -lt 2 ) ]]; then
  echo "$usage" >&2
  exit 2
fi
case "$1" in
  --smoke|host_ccmd|vtest_server|guest_replies|rd) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_BUILD="${FDNC_FUZZ_BUILD:-$FDNC_ROOT/build-fuzz}"
source "$FDNC_ROOT/scripts/sanitize_common.sh"
# The base packages (scripts/setup.sh's list) plus clang: only the fuzz path needs clang.
fdnc_san_install meson ninja-build pkg-config libdrm-dev zlib1g-dev clang-14 libclang-rt-14-dev
if [[ ! -f "$FUZZ_BUILD/build.ninja" ]]; then
  CC=clang-14 CXX=clang++-14 meson setup "$FUZZ_BUILD" "$FDNC_ROOT" --wrap-mode=nodownload \
    --buildtype=debugoptimized -Dfuzz=true -Dtests=false -Dtools=false -Dbench=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fsanitize=fuzzer-no-link -Dc_args=-fsanitize=fuzzer-no-link
fi
# UBSan findings are failures, not warnings.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
if [[ "$1" == "--smoke" ]]; then
  shift
  ninja -C "$FUZZ_BUILD" -j2
  exec meson test -C "$FUZZ_BUILD" --no-rebuild --print-errorlogs --suite fuzz-smoke "$@"
fi
target="$1" secs="$2"; shift 2
ninja -C "$FUZZ_BUILD" -j2 "fuzz/fuzz_$target" fuzz/seeds

corpus="$FUZZ_BUILD/fuzz/corpus/$target"
artifacts="$FUZZ_BUILD/fuzz/artifacts"
mkdir -p "$corpus" "$artifacts"
args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
      -artifact_prefix="$artifacts/$target-")
if [[ -f "$FDNC_ROOT/fuzz/$target.dict" ]]; then args+=(-dict="$FDNC_ROOT/fuzz/$target.dict"); fi
exec "$FUZZ_BUILD/fuzz/fuzz_$target" "${args[@]}" "$@" "$corpus" "$FUZZ_BUILD/fuzz/seeds/$target"
