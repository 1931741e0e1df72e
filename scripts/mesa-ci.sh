#!/usr/bin/env bash
# Unmodified Mesa freedreno on fdnc (issue 15), end to end. Builds what is missing (Mesa 25.0.7,
# the real virglrenderer 1.3, fdnc's build) and runs the GL client tools/fdnc-glframes through
# Mesa's msm backend in these configurations:
#
#   floor  Mesa's own no-op drm-shim: no host at all (the driver's CPU cost per frame)
#   a      Mesa msm backend -> fdnc drm_shim guest backend -> vtest -> fdnc-hostsim
#   b      the same against the real virglrenderer 1.3 vtest server (over fdnc's model msm kernel)
#
# Each run ends with one line
#   FDNC-MESA-RESULT: pass run=a frames=N gl_errors=0 bo_new_host_waits=0 faults=0 async_errors=0 renderer=FD630 ...
# (`fail` and the reason otherwise); the script exits 1 if any run failed, 2 on a setup error.
# A run passes when every frame rendered with glGetError() == 0, the renderer names an Adreno (FDnnn),
# and — for a and b — no bo_new waited on the host, the host reported no fault and no async error,
# and the host kernel saw the guest's iovas: at least one SET_IOVA per bo Mesa created, each inside
# the capset's VA range.
#
#   scripts/mesa-ci.sh [--frames N] [--warmup N] [--runs floor,a,b] [--one-way-us N] [--out DIR]
#
# --one-way-us puts tools/fdnc-delayline between the client and the server of runs a and b: every
# message reaches the other side N µs after it was sent, back-to-back messages stay back to back
# (a round trip of 2N µs, a latency — not fdnc-hostsim's --rtt-us, a per-command service time).
# --out keeps the JSON, logs and kernel logs (default: a temporary directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRAMES=200 WARMUP=20 RUNS="floor,a,b" ONE_WAY_US=0 OUT=""

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --frames) FRAMES="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --one-way-us) ONE_WAY_US="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "mesa-ci: unknown option $1" >&2; usage ;;
  esac
done

log() { echo "mesa-ci: $*" >&2; }
t_start=$(date +%s)

# --- what the runs need ---------------------------------------------------------------------------
source "$ROOT/scripts/setup.sh" >&2
export FDNC_BUILD
ninja -C "$FDNC_BUILD" tools/fdnc-glframes/fdnc-glframes src/drm_shim/libfdnc_drm_shim.so \
  tools/fdnc-hostsim/fdnc-hostsim tools/fdnc-delayline/fdnc-delayline >&2 \
  || { echo "FDNC-MESA-RESULT: fail run=setup reason=fdnc-build"; exit 2; }
t0=$(date +%s)
MESA_PREFIX="$(bash "$ROOT/scripts/mesa/build-mesa.sh" | tail -1)" \
  || { echo "FDNC-MESA-RESULT: fail run=setup reason=mesa-build"; exit 2; }
log "Mesa: $MESA_PREFIX ($(( $(date +%s) - t0 )) s)"
export FDNC_MESA_PREFIX="$MESA_PREFIX"
if [[ ",$RUNS," == *",b,"* ]]; then
  bash "$ROOT/scripts/realhost/build-virglrenderer.sh" >/dev/null \
    || { echo "FDNC-MESA-RESULT: fail run=setup reason=virglrenderer-build"; exit 2; }
fi

if [[ -z "$OUT" ]]; then
  OUT="$(mktemp -d /tmp/fdnc-mesa-ci.XXXXXX)"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log "results in $OUT"

server_pid="" delay_pid=""
cleanup() {
  [[ -n "$delay_pid" ]] && kill "$delay_pid" 2>/dev/null
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_socket() {
  local s="$1" i
  for i in $(seq 1 100); do [[ -S "$s" ]] && return 0; sleep 0.05; done
  return 1
}

# client_socket NAME SERVER_SOCKET: sets CSOCK, the socket a client of run NAME connects to — the
# server's, or with --one-way-us a delay line's in front of it (started here, stopped by stop_delay).
client_socket() {
  local name="$1" server="$2"
  CSOCK="$server"
  [[ "$ONE_WAY_US" == 0 ]] && return 0
  CSOCK="$OUT/$name.delay.sock"; rm -f "$CSOCK"
  "$FDNC_BUILD/tools/fdnc-delayline/fdnc-delayline" --listen "$CSOCK" --connect "$server" \
    --one-way-us "$ONE_WAY_US" >/dev/null 2>"$OUT/$name.delayline.log" &
  delay_pid=$!
  wait_socket "$CSOCK"
}
stop_delay() { [[ -n "$delay_pid" ]] && kill "$delay_pid" 2>/dev/null; wait "$delay_pid" 2>/dev/null || true; delay_pid=""; }

# run_gl NAME SHIM [ENV=VALUE ...]: the GL client's JSON in $OUT/NAME.json, stderr in NAME.stderr.
run_gl() {
  local name="$1" shim="$2"; shift 2
  env "$@" timeout 600 bash "$ROOT/scripts/mesa/run-gl.sh" --shim "$shim" -- \
    --frames "$FRAMES" --warmup "$WARMUP" --json >"$OUT/$name.json" 2>"$OUT/$name.stderr"
}

# verdict NAME EXIT_CODE [KERNEL_LOG]: prints the FDNC-MESA-RESULT line; returns 1 on fail.
verdict() {
  ONE_WAY_US="$ONE_WAY_US" /usr/bin/python3 - "$@" "$OUT" <<'PY'
import json, re, sys
name, code, klog, out = sys.argv[1], int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 4 else ""), sys.argv[-1]
def fail(reason, extra=""):
    print(f"FDNC-MESA-RESULT: fail run={name} reason={reason}{extra}")
    sys.exit(1)
try:
    j = json.load(open(f"{out}/{name}.json"))
except Exception:
    tail = open(f"{out}/{name}.stderr", errors="replace").read().strip().splitlines()[-3:]
    fail(f"exit={code}", " stderr=" + json.dumps(" | ".join(tail)))
fields = [f"frames={j['frames']}", f"gl_errors={j['gl_errors']}",
          f"frame_p50_ms={j['frame_ms']['p50']:.3f}", f"frame_p99_ms={j['frame_ms']['p99']:.3f}"]
renderer = j.get("renderer", "")
m = re.search(r"FD\d+", renderer)
if code != 0:
    fail(f"exit={code}")
if j["gl_errors"] != 0:
    fail("gl_errors", " " + " ".join(fields))
if not m:
    fail("renderer", f" renderer={json.dumps(renderer)}")
if name != "floor":
    s, meas = j.get("device_stats"), j.get("device_stats_measured") or {}
    if not s:
        fail("no-device-stats", " " + json.dumps(j.get("device_stats_note", "")))
    frames = max(1, j["frames"])
    fields += [f"bo_new_host_waits={s['bo_new_waits']}", f"faults={s['faults']}",
               f"async_errors={s['async_errors']}", f"bo_news={s['bo_news']}",
               f"bos_per_frame={meas.get('bo_news', 0) / frames:.2f}",
               f"host_waits_per_frame={meas.get('host_waits', 0) / frames:.2f}"]
    if s["bo_new_waits"] or s["faults"] or s["async_errors"] or s.get("context_lost"):
        fail("device", " " + " ".join(fields))
    # The host kernel saw the guest's iovas: a SET_IOVA per bo, inside the VA range it announced.
    va = set_iova = bad = gem_new = 0
    lo, hi = 0x100000000, 0x200000000
    for line in open(klog, errors="replace"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3 or parts[1] != "0":
            continue
        kv = dict(p.split("=", 1) for p in parts[2].split() if "=" in p)
        if parts[0] == "MSM_GET_PARAM" and kv.get("param") == "VA_START":
            lo = int(kv["value"], 16)
        elif parts[0] == "MSM_GET_PARAM" and kv.get("param") == "VA_SIZE":
            hi = lo + int(kv["value"], 16)
        elif parts[0] == "MSM_GEM_NEW":
            gem_new += 1
        elif parts[0] == "MSM_GEM_INFO" and kv.get("info") == "SET_IOVA" and kv.get("value", "0x0") != "0x0":
            set_iova += 1
            v = int(kv["value"], 16)
            bad += not (lo <= v < hi)
    fields += [f"host_gem_new={gem_new}", f"host_set_iova={set_iova}"]
    if set_iova < s["bo_news"] or bad:
        fail("host-iovas", f" bad={bad} " + " ".join(fields))
fields.append(f"renderer={m.group(0)}")
one_way = int(__import__("os").environ.get("ONE_WAY_US", "0"))
if name != "floor" and one_way:
    fields.append(f"rtt_us={2 * one_way}")
print(f"FDNC-MESA-RESULT: pass run={name} " + " ".join(fields))
PY
}

failed=0
IFS=, read -r -a runs <<<"$RUNS"
for run in "${runs[@]}"; do
  t0=$(date +%s)
  case "$run" in
    floor)
      code=0; run_gl floor noop || code=$?
      verdict floor "$code" || failed=1 ;;
    a)
      sock="$OUT/hostsim.sock"; rm -f "$sock"
      "$FDNC_BUILD/tools/fdnc-hostsim/fdnc-hostsim" --socket "$sock" \
        --kernel-log "$OUT/a.kernel.log" 2>"$OUT/a.hostsim.log" &
      server_pid=$!
      wait_socket "$sock" || { echo "FDNC-MESA-RESULT: fail run=a reason=hostsim-start"; failed=1; continue; }
      client_socket a "$sock" || { echo "FDNC-MESA-RESULT: fail run=a reason=delayline-start"; failed=1; continue; }
      code=0; run_gl a fdnc FDNC_SHIM_BACKEND=guest FDNC_SHIM_TRANSPORT="vtest:$CSOCK" FDNC_SHIM_LOG="$OUT/a.guest.log" || code=$?
      stop_delay
      kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; server_pid=""
      verdict a "$code" "$OUT/a.kernel.log" || failed=1 ;;
    b)
      sock="$OUT/virgl.sock"; rm -f "$sock"
      server_pid="$(bash "$ROOT/scripts/realhost/start-server.sh" --socket "$sock" --era classic \
        --log "$OUT/b.kernel.log" --server-log "$OUT/b.server.log")" \
        || { echo "FDNC-MESA-RESULT: fail run=b reason=server-start"; failed=1; server_pid=""; continue; }
      client_socket b "$sock" || { echo "FDNC-MESA-RESULT: fail run=b reason=delayline-start"; failed=1; continue; }
      code=0; run_gl b fdnc FDNC_SHIM_BACKEND=guest FDNC_SHIM_TRANSPORT="vtest:$CSOCK" FDNC_SHIM_LOG="$OUT/b.guest.log" || code=$?
      stop_delay
      kill "$server_pid" 2>/dev/null; server_pid=""
      verdict b "$code" "$OUT/b.kernel.log" || failed=1 ;;
    *) echo "FDNC-MESA-RESULT: fail run=$run reason=unknown-run"; failed=1 ;;
  esac
  log "run $run: $(( $(date +%s) - t0 )) s"
done
log "finished in $(( $(date +%s) - t_start )) s"
exit "$failed"
