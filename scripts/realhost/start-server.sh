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
# The server runs in a directory of its own (for its core file): every path it gets is absolute.
socket="$(realpath -m "$socket")"
server_log="$(realpath -m "$server_log")"
[[ -n "$log" ]] && log="$(realpath -m "$log")"

server="$(bash "$ROOT/scripts/realhost/build-virglrenderer.sh" | tail -n 1)"
[[ -x "$server" ]] || die "no virgl_test_server ($server)"

node="${FDNC_SHIM_NODE:-/dev/dri/renderD128}"
args=(--no-virgl --drm --no-fork --socket-path "$socket" --rendernode "$node")
[[ $multi -eq 1 ]] && args+=(--multi-clients)

rm -f "$socket"
# No MALLOC_PERTURB_ for the server (meson test sets one for every test): virgl_test_server 1.3
# has a use after free that the scribble turns into a SIGSEGV. A client that leaves right after its
# last fence signaled makes vtest_destroy_context free the context's pending timeline batches, then
# virgl_renderer_context_destroy joins the msm renderer's fence thread, which may be retiring that
# fence at that moment: vtest_write_context_fence reads batch->timeline from the freed batch
# (backtrace in the realhost suite: thread_sync -> msm_renderer_fence_retire ->
# vtest_signal_timeline(timeline=0xd2d2d2d2d2d2d2d2)). Unscribbled, the field still holds the
# context's timeline, whose batch list destroy already emptied, so the read does nothing. No client
# order avoids the window: the fence fd a client waits on signals before that thread runs.
env=(-u MALLOC_PERTURB_ LD_PRELOAD="$shim" FDNC_SHIM_NODE="$node" FDNC_SHIM_ERA="$era")
[[ -n "$delay" ]] && env+=(FDNC_SHIM_FENCE_DELAY_US="$delay")
[[ -n "$log" ]] && env+=(FDNC_SHIM_LOG="$log")
# virgl_test_server does not ignore SIGPIPE: a reply it writes to a client that already left
# (an out-fence fd, a blob reply still pending) kills it without a word (seen in the realhost
# suite). An ignored signal survives exec, so the server gets EPIPE instead and drops the client.
trap '' PIPE
: >"$server_log"
pidfile="$(mktemp)"
core_dir="$(mktemp -d "${TMPDIR:-/tmp}/fdnc-server-core.XXXXXX")"

# The backtrace of the thread that took the fatal signal, from the server's core file. No handler
# can report a fault in the renderer's threads: u_thread_create starts them with every signal but
# SIGSYS blocked, so the kernel kills the server on the spot (neither the server's "SIGSEGV!"
# handler nor the shim's crash report runs); the core is what is left.
core_report() {
  local core pattern
  core="$(find "$core_dir" -maxdepth 1 -name 'core*' -type f | head -n 1)"
  pattern="$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '?')"
  if [[ -z "$core" ]]; then
    echo "start-server: no core file (core_pattern '$pattern', core size limit $(ulimit -c))"
  elif ! command -v gdb >/dev/null; then
    echo "start-server: core file $core, but no gdb to read it"
  else
    echo "start-server: backtrace of the thread that died (from its core file):"
    # The marker skips the frame gdb prints on loading the core (the same as bt's #0).
    gdb -batch -nx -ex 'echo fdnc-core-report\n' -ex 'info threads' -ex 'bt 30' "$server" "$core" 2>/dev/null |
      sed -n '/^fdnc-core-report$/,$p' | grep -E '^(#|\*? +[0-9]+ +Thread)' | sed 's/^/  /' || true
  fi
}

# A watcher waits for the server and appends how it ended to its log: a server killed by a signal
# (SIGSEGV, SIGABRT, SIGPIPE) otherwise leaves nothing behind, and the caller is not its parent.
(
  cd "$core_dir"
  ulimit -c unlimited 2>/dev/null || true
  # stdbuf -oL: the server's stdout lines ("client context created") reach the log as they are
  # written, not in a 4 KiB block a sudden death throws away.
  env "${env[@]}" setsid stdbuf -oL "$server" "${args[@]}" </dev/null >>"$server_log" 2>&1 &
  echo $! >"$pidfile"
  wait $! && rc=0 || rc=$?
  # The report is written aside and lands in the log in one piece: a reader that sees
  # "start-server: virgl_test_server ..." there has the backtrace too.
  if (( rc > 128 )); then
    echo "start-server: virgl_test_server killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))" >report
    # SIGKILL and SIGTERM (how callers stop it) leave no core to look for.
    if (( rc - 128 != 9 && rc - 128 != 15 )); then core_report >>report 2>&1 || true; fi
  else
    echo "start-server: virgl_test_server exited with status $rc" >report
  fi
  cat report >>"$server_log"
  cd / && rm -rf "$core_dir"
) </dev/null >/dev/null 2>&1 &
trap - PIPE
for _ in $(seq 100); do [[ -s "$pidfile" ]] && break; sleep 0.01; done
pid="$(cat "$pidfile")"; rm -f "$pidfile"
[[ -n "$pid" ]] || die "the server did not start"

# Bounded wait (10 s) for the socket; a server that died (e.g. a bad setting) is reported.
for _ in $(seq 100); do
  [[ -S "$socket" ]] && { echo "$pid"; exit 0; }
  kill -0 "$pid" 2>/dev/null || die "server exited before creating $socket (see --server-log)"
  sleep 0.1
done
kill "$pid" 2>/dev/null || true
die "no socket $socket after 10 s"
