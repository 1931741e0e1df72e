#!/bin/sh
# shellcheck disable=SC1091 # the sourced files are generated into the initramfs
# /init of the fdnc CI guest (busybox ash), copied into the initramfs by scripts/qemu-ci.sh.
# Loads the virtio-gpu modules, then runs in order: the registered test binaries, fdnc-info
# against the real virtio_gpu node, the guest suite (probe path vs the real kernel), fdnc-hostsim
# + fdnc-replay over vtest. Prints one `FDNC-GUEST-RESULT: pass|fail ...` line and powers off.
# Every step either runs or prints why it did not ("not built"); nothing is skipped silently.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp

# Written by qemu-ci.sh: FDNC_EXPECT_NC (auto|yes), FDNC_TIMEOUT_MULT, FDNC_REPLAY_ARGS, FDNC_HOST
# (plain|native), FDNC_QEMU_VERSION, FDNC_NATIVE_FRAMES, FDNC_TRACES_DIR; with --mesa also FDNC_MESA=1,
# FDNC_MESA_FRAMES, FDNC_MESA_WARMUP, FDNC_MESA_TIMEOUT, FDNC_RTT_N.
. /fdnc/ci.env
. /fdnc/tools.env

log() { echo "FDNC-GUEST: $*"; }
uptime_s() { read -r t _ </proc/uptime; echo "$t"; }
FAILS=""
SKIPS=""
fail() { FAILS="$FAILS $1"; log "FAIL $1${2:+: $2}"; }
skip() { SKIPS="$SKIPS $1"; log "SKIP $1: $2"; }

log "userspace reached at $(uptime_s) s uptime, kernel $(uname -r)"

# Modules in dependency order (computed on the host from modules.dep).
while read -r ko; do
    [ -n "$ko" ] || continue
    if ! insmod "/lib/modules/fdnc/$ko" 2>/tmp/insmod.err; then
        grep -q "File exists" /tmp/insmod.err || fail "insmod-$ko" "$(cat /tmp/insmod.err)"
    fi
done </fdnc/modules.order

i=0
while [ ! -e /dev/dri/renderD128 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
log "/dev/dri after $(uptime_s) s:"
ls -l /dev/dri 2>&1
for d in /sys/class/drm/renderD*; do
    [ -e "$d/device/driver" ] && log "$(basename "$d") bus driver: $(basename "$(readlink "$d/device/driver")")"
done
dmesg | grep -E '\[drm\]|virtio' | sed 's/^/FDNC-GUEST: dmesg: /'
[ -e /dev/dri/renderD128 ] || fail "render-node" "no /dev/dri/renderD128 (virtio-gpu device or module missing)"

# fdnc_test NAME SUITE TIMEOUT EXPECT WORKDIR [VAR=VALUE...] -- CMD ARGS... (lines from stage.py);
# EXPECT is "fail" for tests meson registers with should_fail.
TESTS_RUN=0
TESTS_PASSED=0
fdnc_test() {
    name=$1 suite=$2 tmo=$(($3 * FDNC_TIMEOUT_MULT)) expect=$4 wd=$5
    shift 5
    envs=""
    while [ "$1" != "--" ]; do envs="$envs $1"; shift; done
    shift
    t0=$(uptime_s)
    log "test $suite/$name: start"
    # shellcheck disable=SC2086
    # Output through a file: the console is a tty and Catch2 would colour it.
    (cd "$wd" && exec env $envs timeout -s KILL "$tmo" "$@") >/tmp/test.out 2>&1
    rc=$?
    cat /tmp/test.out
    TESTS_RUN=$((TESTS_RUN + 1))
    took=$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
    case "$rc:$expect" in
        0:pass) TESTS_PASSED=$((TESTS_PASSED + 1)); log "test $suite/$name: pass (${took} s)" ;;
        77:*) TESTS_PASSED=$((TESTS_PASSED + 1)); log "test $suite/$name: skipped by itself, exit 77 (${took} s)" ;;
        137:*) fail "test-$name" "killed after $tmo s (exit 137)" ;;
        0:fail) fail "test-$name" "exit 0 but meson expects it to fail" ;;
        *:fail) TESTS_PASSED=$((TESTS_PASSED + 1)); log "test $suite/$name: failed as expected, exit $rc (${took} s)" ;;
        *) fail "test-$name" "exit $rc after ${took} s" ;;
    esac
}
fdnc_skip_test() { skip "test-$1" "$3"; }

log "== 1/4 test suite (registered meson tests, run directly) =="
. /fdnc/tests.sh

log "== 2/4 fdnc-info against the real guest kernel =="
INFO_RESULT="not-built"
if [ -n "$FDNC_INFO" ]; then
    "$FDNC_INFO" virtgpu:/dev/dri/renderD128 --json >/tmp/info.json 2>/tmp/info.err
    rc=$?
    cat /tmp/info.json /tmp/info.err
    log "fdnc-info exit status $rc"
    INFO_RESULT="exit$rc"
    # fdnc-info documents 0 = native context usable, 2 = not usable (reason printed), 1 = bad usage.
    case "$rc:$FDNC_EXPECT_NC" in
        0:*) INFO_RESULT="usable" ;;
        2:auto)
            # The named reasons, short, for the verdict line.
            why=""
            grep -q 'capset 6 not in' /tmp/info.json && why="$why+no-capset-6"
            grep -q 'CONTEXT_INIT unsupported' /tmp/info.json && why="$why+no-context-init"
            grep -q 'no 3D support' /tmp/info.json && why="$why+no-3d"
            grep -q 'no blob resources' /tmp/info.json && why="$why+no-blob"
            grep -q 'no host-visible memory' /tmp/info.json && why="$why+no-host-visible"
            INFO_RESULT="not-usable(expected${why:+:${why#+}})" ;;
        2:yes) fail "fdnc-info" "native context expected (--expect-native-context) but not usable" ;;
        *) fail "fdnc-info" "exit status $rc is neither 0 nor the documented not-usable 2" ;;
    esac
else
    skip "fdnc-info" "not built"
fi

log "== 3/4 guest suite (virtgpu probe path vs the real kernel) =="
if grep -q '^fdnc_test' /fdnc/guest-tests.sh; then
    . /fdnc/guest-tests.sh
else
    skip "guest-suite" "not built (no test in suite 'guest')"
fi

log "== 3b/4 the real host (virglrenderer 1.3 over QEMU's native context): replays + C API =="
NATIVE_RESULT="not-run"
CAPI_RESULT="not-run"
NODE_URI=virtgpu:/dev/dri/renderD128
# replay_summary FILE: bos, submits, batches, bo_new host waits and p50/p99 (us), faults, async
# errors from fdnc-replay's --json (guest mode; the last field pair is what the check below reads).
replay_summary() {
    awk '/"bo_new_us"/ { b = 1 } b && /"p50"/ { gsub(/[,"]/, ""); p50 = $2 } b && /"p99"/ { gsub(/[,"]/, ""); p99 = $2; b = 0 }
         /"bos"/ { gsub(/[,"]/, ""); bos = $2 } /"submits"/ { gsub(/[,"]/, ""); sub_ = $2 }
         /"batches"/ { gsub(/[,"]/, ""); bat = $2 } /"host_waits_bo_new"/ { gsub(/[,"]/, ""); hw = $2 } /"faults"/ { gsub(/[,"]/, ""); if ($2 + 0 > f) f = $2 + 0 }
         /"async_errors"/ { gsub(/[,"]/, ""); if ($2 + 0 > a) a = $2 + 0 }
         END { printf "bos=%s submits=%s batches=%s bo_new_host_waits=%s bo_new_p50_us=%s bo_new_p99_us=%s faults=%d async_errors=%d", bos, sub_, bat, hw, p50, p99, f, a }' "$1"
}
if [ "$FDNC_HOST" = native ]; then
    if [ -z "$FDNC_REPLAY" ]; then
        fail "native-replay" "fdnc-replay not built"
    else
        runs=0 passed=0
        set -- "w:gl-frames" "w:compute" "w:alloc-storm"
        for t in "$FDNC_TRACES_DIR"/*.rd "$FDNC_TRACES_DIR"/*.rd.gz; do [ -f "$t" ] && set -- "$@" "rd:$t"; done
        for item in "$@"; do
            kind=${item%%:*} what=${item#*:}
            if [ "$kind" = w ]; then args="--workload $what --frames $FDNC_NATIVE_FRAMES"; name=$what
            else args="--rd $what"; name=$(basename "$what"); fi
            runs=$((runs + 1))
            t0=$(uptime_s)
            # shellcheck disable=SC2086
            $FDNC_IOCTL_COUNT timeout -s KILL $((120 * FDNC_TIMEOUT_MULT)) "$FDNC_REPLAY" --uri "$NODE_URI" --iova guest \
                $args --quiet --json /tmp/native.json >/tmp/native.out 2>&1
            rc=$?
            took=$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
            sum=$(replay_summary /tmp/native.json 2>/dev/null)
            log "native-replay $name: exit $rc $sum (${took} s)"
            [ -s /tmp/ioctl-count.txt ] && log "native-replay $name ioctls: $(tr '\n' ' ' </tmp/ioctl-count.txt)" && rm -f /tmp/ioctl-count.txt
            case "$sum" in
                *" faults=0 async_errors=0") ;;
                *) rc=${rc#0}; rc=${rc:-9} ;;
            esac
            if [ "$rc" = 0 ]; then passed=$((passed + 1))
            else cat /tmp/native.out; fail "native-replay-$name" "exit $rc $sum"; fi
        done
        NATIVE_RESULT="$passed/$runs"
    fi
    if [ -n "$FDNC_CAPI_TEST" ]; then
        timeout -s KILL $((120 * FDNC_TIMEOUT_MULT)) "$FDNC_CAPI_TEST" "$NODE_URI" >/tmp/capi.out 2>&1
        rc=$?
        cat /tmp/capi.out
        if [ $rc -eq 0 ]; then CAPI_RESULT=pass; log "c_api_test $NODE_URI: pass"
        else CAPI_RESULT="exit$rc"; fail "c-api" "c_api_test $NODE_URI exit $rc"; fi
    else
        fail "c-api" "c_api_test not built"
    fi
else
    log "(plain host: no native context, nothing to replay on it)"
fi

MESA_RESULT="not-run"
if [ "${FDNC_MESA:-0}" = 1 ]; then
    log "== 3c/4 Mesa freedreno: Mesa's virtio backend (c-virtio) vs Mesa's msm backend on fdnc (c-fdnc) =="
    # mesa_result RUN EXIT: one FDNC-MESA-RESULT line from fdnc-glframes' --json (pretty-printed: one
    # key per line) and its stderr; returns 1 on fail. Per-frame figures are over the measured frames
    # (device_stats_measured: fdnc's device stats, and the guest ioctl counter's "guest.*" keys).
    mesa_result() {
        awk -v run="$1" -v code="$2" -v err="$(tail -n 2 "/tmp/$1.err" 2>/dev/null | tr '\n"' '| ')" '
            /^  "device_stats": \{/ { sec = "ds."; next } /^  "device_stats_measured": \{/ { sec = "dm."; next }
            /^  "frame_ms": \{/ { sec = "fm."; next } /^  \}/ { sec = ""; next }
            /^ *"[^"]*": / { k = $0; sub(/^ *"/, "", k); sub(/".*/, "", k); val = $0; sub(/^[^:]*: */, "", val); sub(/,$/, "", val); gsub(/"/, "", val); v[sec k] = val; have[sec k] = 1 }
            function per(k) { return sprintf("%.2f", (have["dm." k] ? v["dm." k] : 0) / (v["frames"] > 0 ? v["frames"] : 1)) }
            END {
                if (!have["frames"]) { printf "FDNC-MESA-RESULT: fail run=%s reason=exit=%s stderr=\"%s\"\n", run, code, err; exit 1 }
                r = v["renderer"]; if (match(r, /FD[0-9]+/)) r = substr(r, RSTART, RLENGTH); else r = ""
                f = sprintf("frames=%s gl_errors=%s frame_p50_ms=%.3f frame_p99_ms=%.3f", v["frames"], v["gl_errors"], v["fm.p50"], v["fm.p99"])
                if (run == "c-fdnc")
                    f = f sprintf(" bo_new_host_waits=%s faults=%s async_errors=%s bo_news_per_frame=%s host_waits_per_frame=%s", \
                                  v["ds.bo_new_waits"], v["ds.faults"], v["ds.async_errors"], per("bo_news"), per("host_waits"))
                f = f sprintf(" blob_creates_per_frame=%s execbuf_sync_per_frame=%s blob_mmaps_per_frame=%s virtgpu_waits_per_frame=%s polls_per_frame=%s kernel_calls_per_frame=%s", \
                              per("guest.RESOURCE_CREATE_BLOB"), per("guest.EXECBUFFER.sync"), per("guest.mmap.drm"), per("guest.WAIT"), per("guest.poll"), per("guest.kernel_total"))
                reason = ""
                if (code != 0) reason = "exit=" code
                else if (v["gl_errors"] != 0) reason = "gl_errors"
                else if (r == "") reason = "renderer"
                else if (!have["dm.guest.kernel_total"]) reason = "no-ioctl-counts"
                else if (run == "c-fdnc" && !have["ds.bo_new_waits"]) reason = "no-device-stats"
                else if (run == "c-fdnc" && (v["ds.bo_new_waits"] != 0 || v["ds.faults"] != 0 || v["ds.async_errors"] != 0 || (have["ds.context_lost"] && v["ds.context_lost"] != 0 && v["ds.context_lost"] != "false"))) reason = "device"
                if (reason != "") { printf "FDNC-MESA-RESULT: fail run=%s reason=%s %s renderer=%s\n", run, reason, f, v["renderer"]; exit 1 }
                printf "FDNC-MESA-RESULT: pass run=%s %s renderer=%s\n", run, f, r
            }' "/tmp/$1.json"
    }
    mesa_pass=0 mesa_runs=0
    if [ "$FDNC_HOST" != native ]; then
        fail "mesa" "Mesa's runs need --host native (a DRM native context)"
    elif [ -z "$FDNC_GLFRAMES" ] || [ -z "$FDNC_SHIM_SO" ] || [ ! -f /fdnc/ioctl_count.so ]; then
        fail "mesa" "not staged (fdnc-glframes '$FDNC_GLFRAMES', shim '$FDNC_SHIM_SO', /fdnc/ioctl_count.so)"
    else
        if [ -x /fdnc/rtt_probe ]; then
            /fdnc/rtt_probe /dev/dri/renderD128 "${FDNC_RTT_N:-200}" >/tmp/rtt.out 2>&1
            rc=$?
            sed 's/^/FDNC-GUEST: /' /tmp/rtt.out | grep -v '^FDNC-GUEST: FDNC-RTT:'
            grep '^FDNC-RTT:' /tmp/rtt.out
            [ $rc -eq 0 ] || fail "rtt-probe" "exit $rc"
        fi
        mesa_env="EGL_PLATFORM=surfaceless MESA_LOADER_DRIVER_OVERRIDE=msm MESA_SHADER_CACHE_DISABLE=true
            __EGL_VENDOR_LIBRARY_FILENAMES=$FDNC_MESA_DIR/share/glvnd/egl_vendor.d/50_mesa.json LD_LIBRARY_PATH=$FDNC_MESA_DIR/lib
            FDNC_IOCTL_COUNT_BYFD=1"
        # c-fdnc first: the kernel model's MSM_PARAM_FAULTS is one count for the whole host (classic era),
        # and each c-virtio submit adds one there (Mesa's virtio backend sends presumed iova 0, which
        # the model counts as a fault: msm_kernel.h require_presumed), so the c-fdnc check of its
        # device's faults would read c-virtio's.
        t_mesa=$(uptime_s)
        for run in c-fdnc c-virtio; do
            mesa_runs=$((mesa_runs + 1))
            if [ "$run" = c-fdnc ]; then
                extra="LD_PRELOAD=/fdnc/ioctl_count.so:$FDNC_SHIM_SO FDNC_SHIM_BACKEND=guest FDNC_SHIM_NODE=/dev/dri/renderD129
                    FDNC_SHIM_TRANSPORT=virtgpu:/dev/dri/renderD128 FDNC_SHIM_LOG=/tmp/$run.shim.log"
            else
                extra="LD_PRELOAD=/fdnc/ioctl_count.so"
            fi
            # Marks 0 and 3 bracket the run, 1 and 2 (from the counter inside the client) its measured
            # frames: the host notes its kernel model log's length at each (qemu-ci.sh --mesa).
            echo "FDNC-IOCTL-MARK $run 0"; sleep 0.5
            t0=$(uptime_s)
            # shellcheck disable=SC2086
            env $mesa_env $extra FDNC_IOCTL_COUNT_OUT="/tmp/$run.ioctls" FDNC_IOCTL_COUNT_MARK="$run" \
                timeout -s KILL "${FDNC_MESA_TIMEOUT:-600}" "$FDNC_GLFRAMES" --frames "$FDNC_MESA_FRAMES" \
                --warmup "$FDNC_MESA_WARMUP" --json >"/tmp/$run.json" 2>"/tmp/$run.err"
            rc=$?
            took=$(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')
            sleep 0.5; echo "FDNC-IOCTL-MARK $run 3"; sleep 0.5
            log "mesa $run: exit $rc after $took s (frames $FDNC_MESA_FRAMES, warm-up $FDNC_MESA_WARMUP)"
            [ -s "/tmp/$run.err" ] && tail -n 5 "/tmp/$run.err" | sed "s/^/FDNC-GUEST: mesa $run stderr: /"
            echo "FDNC-MESA-JSON $run $(tr -d '\n' <"/tmp/$run.json" | tr -s ' ')"
            [ -s "/tmp/$run.ioctls" ] && echo "FDNC-MESA-IOCTLS $run $(tr '\n' ' ' <"/tmp/$run.ioctls")"
            if [ -s "/tmp/$run.shim.log" ]; then
                log "mesa $run guest shim log: $(cut -f1,2 "/tmp/$run.shim.log" | sort | uniq -c | awk '{ printf "%s%s:%s=%s", n++ ? " " : "", $2, $3, $1 }')"
            fi
            if mesa_result "$run" "$rc" >/tmp/mesa-result.txt; then mesa_pass=$((mesa_pass + 1)); cat /tmp/mesa-result.txt
            else cat /tmp/mesa-result.txt; fail "mesa-$run" "$(cut -d' ' -f3-4 /tmp/mesa-result.txt)"; fi
        done
    fi
    [ -n "${t_mesa:-}" ] && log "mesa step (round trip probe + both runs): $(awk -v a="$t_mesa" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s"
    MESA_RESULT="$mesa_pass/$mesa_runs"
fi

log "== 4/4 fdnc-hostsim + fdnc-replay over vtest inside the guest =="
REPLAY_RESULT="not-built"
SOCK=/tmp/fdnc-vtest.sock
if [ -n "$FDNC_HOSTSIM" ]; then
    "$FDNC_HOSTSIM" --socket "$SOCK" >/tmp/hostsim.log 2>&1 &
    hostsim_pid=$!
    i=0
    while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -S "$SOCK" ]; then
        fail "fdnc-hostsim" "no socket after 10 s"
    else
        if [ -n "$FDNC_INFO" ]; then
            "$FDNC_INFO" "vtest:$SOCK" >/tmp/info-vtest.txt 2>&1
            rc=$?
            [ $rc -eq 0 ] || { cat /tmp/info-vtest.txt; fail "fdnc-info-vtest" "exit $rc (hostsim should offer a usable context)"; }
            [ $rc -eq 0 ] && log "fdnc-info vtest:$SOCK: usable"
        fi
        if [ -n "$FDNC_REPLAY" ]; then
            # shellcheck disable=SC2086
            timeout -s KILL $((120 * FDNC_TIMEOUT_MULT)) "$FDNC_REPLAY" --uri "vtest:$SOCK" $FDNC_REPLAY_ARGS >/tmp/replay.out 2>&1
            rc=$?
            cat /tmp/replay.out
            # Faults must be 0: fdnc-replay's exit status says so; also refuse any "faults N>0" it prints.
            faults=$(grep -oiE '"?faults"?[ :=]+[0-9]+' /tmp/replay.out | grep -oE '[0-9]+$' | sort -n | tail -1)
            REPLAY_RESULT="exit$rc,faults=${faults:-?}"
            why=$(grep -o '"error": "[^"]*[^"]' /tmp/replay.out | grep -v '"error": ""' | head -1 | cut -d'"' -f4)
            if [ $rc -ne 0 ]; then fail "fdnc-replay" "exit $rc${why:+ ($why)}"
            elif [ -n "$faults" ] && [ "$faults" -ne 0 ]; then fail "fdnc-replay" "$faults faults"
            else REPLAY_RESULT="pass,faults=${faults:-0}"; fi
        else
            skip "fdnc-replay" "not built"
        fi
    fi
    kill "$hostsim_pid" 2>/dev/null
    wait "$hostsim_pid" 2>/dev/null
    grep -v '^$' /tmp/hostsim.log | tail -5 | sed 's/^/FDNC-GUEST: hostsim: /'
else
    skip "fdnc-hostsim" "not built"
fi

if [ -z "$FAILS" ]; then verdict=pass; else verdict=fail; fi
echo "FDNC-GUEST-RESULT: $verdict tests=$TESTS_PASSED/$TESTS_RUN info=$INFO_RESULT replay=$REPLAY_RESULT" \
    "host=${FDNC_HOST:-plain} qemu=${FDNC_QEMU_VERSION:-?} kernel=$(uname -r) native-replays=$NATIVE_RESULT capi=$CAPI_RESULT${FDNC_MESA:+ mesa=$MESA_RESULT}" \
    "failed=[${FAILS# }] skipped=[${SKIPS# }] uptime=$(uptime_s)s"
sync
poweroff -f
