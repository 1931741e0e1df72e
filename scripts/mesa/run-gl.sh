#!/usr/bin/env bash
# Run a GL program (default: tools/fdnc-glframes) against the Mesa freedreno build of
# scripts/mesa/build-mesa.sh, with an msm render node faked inside the process by a drm shim.
#
#   scripts/mesa/run-gl.sh --shim noop [-- fdnc-glframes args]     Mesa's own no-op shim: no host
#                                                                 at all (the driver's CPU floor)
#   FDNC_SHIM_BACKEND=host scripts/mesa/run-gl.sh --shim fdnc      fdnc's drm_shim; FDNC_SHIM_* from
#                                                                 the environment pass through
#   scripts/mesa/run-gl.sh --shim fdnc -- /path/to/prog args       any other program
#
# Options (before `--`; everything after it is the program and its arguments, or, if the first word
# after it starts with `-`, arguments for the default program):
#   --shim noop|fdnc|none   which shim is preloaded (default fdnc); none = no shim (needs a real node)
#   --mesa PREFIX           Mesa install prefix (default $FDNC_MESA_PREFIX, else the output of
#                           build-mesa.sh, which returns at once when its cache exists and builds
#                           Mesa otherwise)
#   --build DIR             fdnc build dir for the shim and the default program
#                           (default $FDNC_BUILD, else <checkout>/build)
#   --gpu-id N              FD_GPU_ID for the noop shim (Mesa's default: 630)
#   --print-env             print the environment that would be used (shell syntax) and exit
#
# Environment set for the program: LD_LIBRARY_PATH (Mesa's lib first), __EGL_VENDOR_LIBRARY_FILENAMES
# (Mesa's 50_mesa.json only, so glvnd loads no other vendor), EGL_PLATFORM=surfaceless,
# MESA_LOADER_DRIVER_OVERRIDE=msm, LD_PRELOAD (the shim first), MESA_SHADER_CACHE_DISABLE=true unless
# already set (every run compiles its shaders: results do not depend on a cache in $HOME).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHIM=fdnc
PREFIX="${FDNC_MESA_PREFIX:-}"
BUILD="${FDNC_BUILD:-$ROOT/build}"
GPU_ID=""
PRINT_ENV=0

log() { echo "run-gl: $*" >&2; }
usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) [[ $# -ge 2 ]] || usage; SHIM="$2"; shift 2 ;;
    --shim=*) SHIM="${1#*=}"; shift ;;
    --mesa) [[ $# -ge 2 ]] || usage; PREFIX="$2"; shift 2 ;;
    --mesa=*) PREFIX="${1#*=}"; shift ;;
    --build) [[ $# -ge 2 ]] || usage; BUILD="$2"; shift 2 ;;
    --build=*) BUILD="${1#*=}"; shift ;;
    --gpu-id) [[ $# -ge 2 ]] || usage; GPU_ID="$2"; shift 2 ;;
    --gpu-id=*) GPU_ID="${1#*=}"; shift ;;
    --print-env) PRINT_ENV=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) log "unknown option: $1"; usage ;;
  esac
done

BUILD="$(cd "$BUILD" 2>/dev/null && pwd)" || { log "no build dir: ${FDNC_BUILD:-$ROOT/build}"; exit 2; }
DEFAULT_PROG="$BUILD/tools/fdnc-glframes/fdnc-glframes"
if [[ $# -eq 0 || "$1" == -* ]]; then
  [[ -x "$DEFAULT_PROG" ]] || { log "$DEFAULT_PROG not built (ninja -C $BUILD tools/fdnc-glframes/fdnc-glframes; needs libegl-dev libgles-dev)"; exit 2; }
  set -- "$DEFAULT_PROG" "$@"
fi

if [[ -z "$PREFIX" ]]; then
  PREFIX="$(bash "$ROOT/scripts/mesa/build-mesa.sh" | tail -1)"
fi
VENDOR_JSON="$PREFIX/share/glvnd/egl_vendor.d/50_mesa.json"
[[ -f "$VENDOR_JSON" && -f "$PREFIX/lib/libEGL_mesa.so.0" ]] || { log "not a Mesa install prefix: $PREFIX"; exit 2; }

case "$SHIM" in
  noop)
    preload="$PREFIX/lib/libfreedreno_noop_drm_shim.so"
    [[ -f "$preload" ]] || { log "$preload missing (Mesa built without -Dtools=drm-shim?)"; exit 2; }
    [[ -n "$GPU_ID" ]] && export FD_GPU_ID="$GPU_ID"
    ;;
  fdnc)
    preload="$BUILD/src/drm_shim/libfdnc_drm_shim.so"
    [[ -f "$preload" ]] || { log "$preload not built (ninja -C $BUILD src/drm_shim/libfdnc_drm_shim.so)"; exit 2; }
    [[ -n "$GPU_ID" ]] && log "--gpu-id applies to --shim noop only (fdnc's host backend reports the model's chip)"
    ;;
  none) preload="" ;;
  *) log "--shim must be noop, fdnc or none (got '$SHIM')"; exit 2 ;;
esac

export LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export __EGL_VENDOR_LIBRARY_FILENAMES="$VENDOR_JSON"
export EGL_PLATFORM=surfaceless
export MESA_LOADER_DRIVER_OVERRIDE=msm
export MESA_SHADER_CACHE_DISABLE="${MESA_SHADER_CACHE_DISABLE:-true}"
[[ -n "$preload" ]] && export LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}"

if [[ $PRINT_ENV -eq 1 ]]; then
  for v in LD_LIBRARY_PATH __EGL_VENDOR_LIBRARY_FILENAMES EGL_PLATFORM MESA_LOADER_DRIVER_OVERRIDE \
           MESA_SHADER_CACHE_DISABLE LD_PRELOAD FD_GPU_ID; do
    [[ -n "${!v:-}" ]] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  env | grep '^FDNC_SHIM_' | sed 's/^/export /' || true
  exit 0
fi

shim_env="$(env | grep -E '^(FDNC_SHIM_|FD_GPU_ID=|DRM_SHIM)' | tr '\n' ' ' || true)"
log "mesa=$PREFIX shim=$SHIM ${shim_env}program=$*"
exec "$@"
