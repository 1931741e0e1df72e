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
# (plain|native), FDNC_QEMU_VERSION, FDNC_NATIVE_FRAMES, FDNC_TRACES_DIR.
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
    "host=${FDNC_HOST:-plain} qemu=${FDNC_QEMU_VERSION:-?} kernel=$(uname -r) native-replays=$NATIVE_RESULT capi=$CAPI_RESULT" \
    "failed=[${FAILS# }] skipped=[${SKIPS# }] uptime=$(uptime_s)s"
sync
poweroff -f
