#!/usr/bin/env bash
# Start the real virglrenderer 1.3 vtest server (msm native contexts) over fdnc's model msm kernel:
# virgl_test_server with libfdnc_drm_shim.so preloaded, in the background. Prints its PID on stdout
# once the socket exists (everything else goes to stderr). Stop it with `kill <pid>`.
#
#   start-server.sh --socket S --era classic|novma|vmbind [--fence-delay-us N] [--log FILE]
#                   [--multi-clients] [--shim PATH] [--server-log FILE]
#
# --shim defaults to $FDNC_BUILD/src/drm_shim/libfdnc_drm_shim.so (FDNC_BUILD defaults to build/).
# The server is built (once, cached) by build-virglrenderer.sh. Other FDNC_SHIM_* settings in the
# environment (MEMORY_LIMIT, VA_START, VA_SIZE, STATS) pass through to the shim.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${FDNC_BUILD:-$ROOT/build}"
socket="" era="" delay="" log="" multi=0 shim="" server_log="/dev/null"

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
die() { echo "start-server: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --socket) socket="$2"; shift 2 ;;
    --era) era="$2"; shift 2 ;;
    --fence-delay-us) delay="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --multi-clients) multi=1; shift ;;
    --shim) shim="$2"; shift 2 ;;
    --server-log) server_log="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "start-server: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$socket" && -n "$era" ]] || usage
case "$era" in classic|novma|vmbind) ;; *) die "--era must be classic, novma or vmbind" ;; esac
shim="${shim:-$BUILD/src/drm_shim/libfdnc_drm_shim.so}"
[[ -f "$shim" ]] || die "shim not found: $shim (build it: ninja -C $BUILD src/drm_shim/libfdnc_drm_shim.so)"
shim="$(cd "$(dirname "$shim")" && pwd)/$(basename "$shim")"

server="$(bash "$ROOT/scripts/realhost/build-virglrenderer.sh" | tail -n 1)"
[[ -x "$server" ]] || die "no virgl_test_server ($server)"

node="${FDNC_SHIM_NODE:-/dev/dri/renderD128}"
args=(--no-virgl --drm --no-fork --socket-path "$socket" --rendernode "$node")
[[ $multi -eq 1 ]] && args+=(--multi-clients)

rm -f "$socket"
env=(LD_PRELOAD="$shim" FDNC_SHIM_NODE="$node" FDNC_SHIM_ERA="$era")
[[ -n "$delay" ]] && env+=(FDNC_SHIM_FENCE_DELAY_US="$delay")
[[ -n "$log" ]] && env+=(FDNC_SHIM_LOG="$log")
# virgl_test_server does not ignore SIGPIPE: a reply it writes to a client that already left
# (an out-fence fd, a blob reply still pending) kills it without a word (seen in the realhost
# suite). An ignored signal survives exec, so the server gets EPIPE instead and drops the client.
trap '' PIPE
env "${env[@]}" setsid "$server" "${args[@]}" </dev/null >"$server_log" 2>&1 &
trap - PIPE
pid=$!

# Bounded wait (10 s) for the socket; a server that died (e.g. a bad setting) is reported.
for _ in $(seq 100); do
  [[ -S "$socket" ]] && { echo "$pid"; exit 0; }
  kill -0 "$pid" 2>/dev/null || die "server exited before creating $socket (see --server-log)"
  sleep 0.1
done
kill "$pid" 2>/dev/null || true
die "no socket $socket after 10 s"
