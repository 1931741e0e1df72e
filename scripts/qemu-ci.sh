#!/usr/bin/env bash
# CI in a QEMU guest: boot a Debian kernel with a virtio-gpu device, run fdnc's test binaries and
# the real-kernel probes inside it, and exit with the guest's verdict. See --help and README.md
# ("CI in a QEMU guest").
set -euo pipefail

FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<'USAGE'
Usage: scripts/qemu-ci.sh [options]

Builds a guest image from the project's build (every test registered in meson, fdnc-info,
fdnc-hostsim, fdnc-replay, their shared libraries, ../shared/traces), boots it in QEMU with a
virtio-gpu device and a Debian guest kernel, streams the guest's serial console and exits with
the guest's result. Inside the guest, in order: the test binaries (run directly, not via meson),
`fdnc-info virtgpu:/dev/dri/renderD128 --json`, the 'guest' suite (virtgpu probe path against
the real kernel), fdnc-hostsim + fdnc-replay over vtest.

Hosts (--host):
  native  (default when it can be set up) the production path: QEMU 11 from a Debian sid root
          (downloaded once with a private apt configuration and unpacked with dpkg -x into
          $FDNC_CACHE_DIR, default /var/cache/fdnc), started through that root's own loader with
          virtio-gpu-gl-pci,drm_native_context=on and egl-headless, the real virglrenderer 1.3
          (scripts/realhost/build-virglrenderer.sh, cached) first on its library path and fdnc's
          msm kernel model (libfdnc_drm_shim.so) preloaded. In the guest, on top of the steps
          above: fdnc-info must be usable; fdnc-replay --iova guest on every synthetic workload
          and shared capture and tests/capi/c_api_test over virtgpu:/dev/dri/renderD128, all with
          faults 0 and async errors 0; afterwards the host-side shim log is checked.
  plain   Debian's own QEMU (bookworm: 7.2, no native context): the negative test; fdnc-info must
          say "not usable" with its reasons.
  auto    native if its set-up works, else plain (the reason is printed)

Options:
  --host native|plain|auto  see above (default auto)
  --frames N           native: --frames of each synthetic workload (default 4)
  --suites LIST        step 1 runs only the registered tests of these meson suites (comma list;
                       default: every registered test); the others are listed as skipped
  --build DIR          build directory (default: build, as scripts/test.sh uses)
  --qemu BIN           QEMU binary (default: qemu-system-$(uname -m))
  --machine STRING     -machine type (default: q35 on x86_64, virt on aarch64)
  --gpu-device STRING  the -device string of the GPU (default: virtio-gpu-pci)
  --qemu-args "ARGS"   extra QEMU arguments, word-split (e.g. -object/-accel/-display options)
  --accel auto|kvm|tcg auto (default) probes KVM with a short boot and falls back to TCG
  --kernel PATH        boot this kernel instead of Debian's linux-image-*-<arch>
  --kernel-suite SUITE Debian's kernel from SUITE (e.g. trixie: 6.12) instead of the machine's own
                       suite, through a private apt configuration (nothing installed)
  --modules DIR        with --kernel: directory of plain .ko files + modules.order (load order);
                       without it the kernel must have virtio-gpu built in
  --expect-native-context
                       fail unless fdnc-info finds a usable native context (a real DRM
                       native-context host); default: "not usable" (exit 2) is accepted
  --replay-args "ARGS" fdnc-replay arguments after --uri (default: "--frames 4 --json -")
  --timeout SECONDS    bound on the guest run (default: 270; 870 with --mesa)
  --keep               keep the staged guest root and the initramfs in build/qemu-ci/
  --mesa               native only, opt-in: also run unmodified Mesa 25.0.7 freedreno in the guest
                       (scripts/mesa/build-mesa.sh gives the prefix; built and cached on first use),
                       tools/fdnc-glframes twice on the same guest and host: c-virtio = Mesa's own
                       virtio backend on /dev/dri/renderD128, c-fdnc = Mesa's msm backend on fdnc
                       (libfdnc_drm_shim.so, FDNC_SHIM_BACKEND=guest, fake node renderD129, transport
                       virtgpu:/dev/dri/renderD128); each prints a FDNC-MESA-RESULT line, the host
                       adds its kernel model's counts per frame (FDNC-MESA-HOST lines) and the
                       side-by-side table (build/qemu-ci/mesa-table.md); a failed run fails the job.
                       Before them, scripts/qemu/rtt_probe.c measures the guest<->host round trip.
  --mesa-frames N      measured frames of each Mesa run (default 200)
  --mesa-warmup N      warm-up frames of each Mesa run (default 20)
  -h, --help           this text

Files: build/qemu-ci/serial.log (the guest console, kept), build/qemu-ci/qemu.log (QEMU's own
output), build/qemu-cache/ (the unpacked guest kernel and modules, reused); native: build/qemu-ci/shim.log
(the host kernel model's ioctl log), $FDNC_CACHE_DIR/qemu-sid-root-<key>/ (the sid root).

Exit status:
  0  the guest ran everything and printed "FDNC-GUEST-RESULT: pass"
  1  the guest printed "FDNC-GUEST-RESULT: fail" (a test, fdnc-info or the replay failed)
  2  set-up error: bad option, package install, build, or the guest kernel cannot be downloaded
  3  timeout: the guest did not finish within --timeout seconds
  4  QEMU failed (non-zero exit) before the guest printed a result
  5  QEMU exited but the guest printed no FDNC-GUEST-RESULT line (e.g. kernel panic, init died)
USAGE
}

die() { echo "FDNC-QEMU-CI: ERROR: $*" >&2; exit 2; }

HOST_ARCH=$(uname -m)
QEMU=qemu-system-$HOST_ARCH
case "$HOST_ARCH" in
    x86_64) MACHINE=q35; CONSOLE=ttyS0; QEMU_PACKAGE=qemu-system-x86 ;;
    aarch64) MACHINE=virt; CONSOLE=ttyAMA0; QEMU_PACKAGE=qemu-system-arm ;; # untested
    *) MACHINE=""; CONSOLE=ttyS0; QEMU_PACKAGE="" ;;
esac
GPU_DEVICE=virtio-gpu-pci
QEMU_ARGS=""
ACCEL=auto
KERNEL=""
MODULES=""
EXPECT_NC=auto
REPLAY_ARGS="--frames 4 --json -"
TIMEOUT=270
TIMEOUT_SET=0
KEEP=0
HOST=auto
FRAMES=4
MESA=0
MESA_FRAMES=200
MESA_WARMUP=20
BUILD="$FDNC_ROOT/build"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) BUILD="$(realpath -m "${2:?}")"; shift 2 ;;
        --qemu) QEMU="${2:?}"; shift 2 ;;
        --machine) MACHINE="${2:?}"; shift 2 ;;
        --gpu-device) GPU_DEVICE="${2:?}"; shift 2 ;;
        --qemu-args) QEMU_ARGS="${2:?}"; shift 2 ;;
        --accel) ACCEL="${2:?}"; shift 2 ;;
        --kernel) KERNEL="$(realpath "${2:?}")"; shift 2 ;;
        --kernel-suite) export QK_SUITE="${2:?}"; shift 2 ;;
        --modules) MODULES="$(realpath "${2:?}")"; shift 2 ;;
        --expect-native-context) EXPECT_NC=yes; shift ;;
        --replay-args) REPLAY_ARGS="${2?}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?}"; TIMEOUT_SET=1; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --host) HOST="${2:?}"; shift 2 ;;
        --frames) FRAMES="${2:?}"; shift 2 ;;
        --mesa) MESA=1; shift ;;
        --mesa-frames) MESA_FRAMES="${2:?}"; shift 2 ;;
        --mesa-warmup) MESA_WARMUP="${2:?}"; shift 2 ;;
        --suites) export FDNC_QEMU_SUITES="${2:?}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout needs whole seconds"
[[ "$ACCEL" =~ ^(auto|kvm|tcg)$ ]] || die "--accel is auto, kvm or tcg"
[[ -z "$MODULES" || -n "$KERNEL" ]] || die "--modules goes with --kernel"
[[ "$HOST" =~ ^(auto|native|plain)$ ]] || die "--host is native, plain or auto"
[[ "$FRAMES" =~ ^[0-9]+$ ]] || die "--frames needs a whole number"
[[ "$MESA_FRAMES" =~ ^[1-9][0-9]*$ && "$MESA_WARMUP" =~ ^[0-9]+$ ]] || die "--mesa-frames/--mesa-warmup need whole numbers (frames >= 1)"
[[ $MESA == 0 || "$HOST" != plain ]] || die "--mesa needs --host native (a DRM native context)"
[[ $MESA == 1 && $TIMEOUT_SET == 0 ]] && TIMEOUT=$((TIMEOUT + 600))
if [[ "$HOST" != plain && "$HOST_ARCH" != x86_64 ]]; then
    [[ "$HOST" == native ]] && die "--host native is x86_64 only"
    HOST=plain
fi

t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Build dependencies + the build dir (as scripts/test.sh), then the guest's own packages.
export FDNC_BUILD="$BUILD"
# shellcheck source=scripts/setup.sh
source "$FDNC_ROOT/scripts/setup.sh" || die "scripts/setup.sh failed"
QEMU_PACKAGES=(busybox-static cpio gzip xz-utils kmod)
[[ "$HOST" != native && "$QEMU" == "qemu-system-$HOST_ARCH" && -n "$QEMU_PACKAGE" ]] && QEMU_PACKAGES+=("$QEMU_PACKAGE")
[[ -n "$MACHINE" ]] || die "no default QEMU machine for $HOST_ARCH: pass --machine"
fdnc_install_packages "${QEMU_PACKAGES[@]}" || die "cannot install ${QEMU_PACKAGES[*]}"
ninja -C "$FDNC_BUILD" || die "build failed in $FDNC_BUILD"
OUT="$FDNC_BUILD/qemu-ci"
CACHE="$FDNC_BUILD/qemu-cache"
mkdir -p "$OUT" "$CACHE"

# The native host: sid root (QEMU 11), the real virglrenderer, the kernel model. Each part is
# cached outside the checkout; a failure is fatal with --host native and means plain with auto.
QEMU_PREFIX=()
QEMU_VERSION=""
if [[ "$HOST" != plain ]]; then
    # shellcheck source=scripts/qemu/native.sh
    source "$FDNC_ROOT/scripts/qemu/native.sh"
    if native_prepare; then
        HOST=native
        QEMU_PREFIX=("${NATIVE_PREFIX[@]}")
        QEMU="$NATIVE_QEMU"
        QEMU_VERSION="$NATIVE_QEMU_VERSION"
        GPU_DEVICE=virtio-gpu-gl-pci,hostmem=2G,blob=true,drm_native_context=on
        [[ -n "$QEMU_ARGS" ]] && QEMU_ARGS+=" "
        QEMU_ARGS+="$NATIVE_QEMU_ARGS -display egl-headless,rendernode=$NATIVE_NODE"
        [[ "$EXPECT_NC" == auto ]] && EXPECT_NC=yes
    else
        [[ "$HOST" == native ]] && die "--host native cannot be set up: $NATIVE_WHY"
        echo "FDNC-QEMU-CI: native host not available ($NATIVE_WHY): falling back to --host plain"
        HOST=plain
        fdnc_install_packages "$QEMU_PACKAGE" || die "cannot install $QEMU_PACKAGE"
    fi
fi
[[ $MESA == 0 || "$HOST" == native ]] || die "--mesa needs the native host, which is not available"
MESA_PREFIX=""
if [[ $MESA == 1 ]]; then
    t_mesa=$(date +%s)
    MESA_PREFIX=$(bash "$FDNC_ROOT/scripts/mesa/build-mesa.sh" | tail -n 1) && [[ -f "$MESA_PREFIX/lib/libEGL_mesa.so.0" ]] ||
        die "--mesa: scripts/mesa/build-mesa.sh gave no Mesa install prefix"
    echo "FDNC-QEMU-CI: Mesa $MESA_PREFIX ($(( $(date +%s) - t_mesa )) s)"
fi
if [[ "$HOST" == plain ]]; then
    command -v "$QEMU" >/dev/null || die "QEMU binary $QEMU not found"
    QEMU_VERSION=$("$QEMU" --version | sed -n '1s/.*version \([0-9][0-9.]*\).*/\1/p')
fi
echo "FDNC-QEMU-CI: host $HOST, QEMU ${QEMU_VERSION:-?} at $(elapsed) s"

LOG="$OUT/serial.log"
QLOG="$OUT/qemu.log"
rm -f "$LOG" "$QLOG"

# Guest kernel.
if [[ -n "$KERNEL" ]]; then
    [[ -f "$KERNEL" ]] || die "--kernel $KERNEL does not exist"
    VMLINUZ="$KERNEL"
    MODDIR="$MODULES"
    echo "FDNC-QEMU-CI: guest kernel $KERNEL (modules: ${MODULES:-none, virtio-gpu must be built in})"
else
    # shellcheck source=scripts/qemu/kernel.sh
    source "$FDNC_ROOT/scripts/qemu/kernel.sh"
    qemu_ci_kernel "$CACHE"
    VMLINUZ="$QK_VMLINUZ"
    echo "FDNC-QEMU-CI: guest kernel package $QK_PACKAGE: $(cat "$(dirname "$QK_VMLINUZ")/version")"
    MODDIR="$QK_MODULES_DIR"
fi

# Guest root: busybox, /init, modules, the staged build.
ROOT="$OUT/root"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules/fdnc,fdnc}
BUSYBOX=/bin/busybox
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing (package busybox-static)"
ldd "$BUSYBOX" >/dev/null 2>&1 && die "$BUSYBOX is dynamically linked: install busybox-static"
cp "$BUSYBOX" "$ROOT/bin/busybox"
while read -r applet; do
    [[ -n "$applet" && "$applet" != bin/busybox ]] || continue
    [[ -e "$ROOT/$applet" ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <("$BUSYBOX" --list-full)
install -m 0755 "$FDNC_ROOT/scripts/qemu/init.sh" "$ROOT/init"
# A dynamic /bin/true (coreutils; its libc comes with the staged binaries'): a test that execs it
# with a preloaded library (drm_shim's bad-setting test) needs the dynamic loader, which busybox's
# static applet never runs.
[[ -x /usr/bin/true ]] && ! ldd /usr/bin/true 2>&1 | grep -q "not a dynamic" && rm -f "$ROOT/bin/true" && cp /usr/bin/true "$ROOT/bin/true"
: >"$ROOT/fdnc/modules.order"
if [[ -n "$MODDIR" ]]; then
    [[ -f "$MODDIR/modules.order" ]] || die "$MODDIR has no modules.order"
    while read -r ko; do
        [[ -n "$ko" ]] || continue
        cp "$MODDIR/$ko" "$ROOT/lib/modules/fdnc/" || die "module $ko missing in $MODDIR"
        echo "$ko" >>"$ROOT/fdnc/modules.order"
    done <"$MODDIR/modules.order"
fi
TRACES="$(realpath -m "$FDNC_ROOT/../shared/traces")"
MESON_PY=$(head -1 "$(command -v meson)" | sed -n "s/^#! *\(\/[^ ]*python[0-9.]*\)$/\1/p")
# meson's own interpreter can read its test setup (should_fail); stage.py says if it cannot.
STAGE_MESA=()
[[ $MESA == 1 ]] && STAGE_MESA=(--mesa "$MESA_PREFIX")
"${MESON_PY:-python3}" "$FDNC_ROOT/scripts/qemu/stage.py" "$FDNC_ROOT" "$FDNC_BUILD" "$ROOT" "$TRACES" "${STAGE_MESA[@]}" || die "staging the guest root failed"
# Native: a guest-side ioctl counter for the replays (how many kernel calls one bo_new costs).
if [[ "$HOST" == native ]]; then
    gcc -O2 -shared -fPIC -o "$ROOT/fdnc/ioctl_count.so" "$FDNC_ROOT/scripts/qemu/ioctl_count.c" ||
        echo "FDNC-QEMU-CI: warning: cannot build the guest ioctl counter; replays run without it"
fi
if [[ $MESA == 1 ]]; then
    [[ -f "$ROOT/fdnc/ioctl_count.so" ]] || die "--mesa needs the guest ioctl counter (scripts/qemu/ioctl_count.c)"
    gcc -O2 -o "$ROOT/fdnc/rtt_probe" "$FDNC_ROOT/scripts/qemu/rtt_probe.c" || die "cannot build scripts/qemu/rtt_probe.c"
fi
# TCG runs code several times slower than the host: stretch each test's meson timeout.
cat >"$ROOT/fdnc/ci.env" <<ENV
FDNC_EXPECT_NC=$EXPECT_NC
FDNC_TIMEOUT_MULT=4
FDNC_REPLAY_ARGS="$REPLAY_ARGS"
FDNC_HOST=$HOST
FDNC_QEMU_VERSION=$QEMU_VERSION
FDNC_NATIVE_FRAMES=$FRAMES
FDNC_TRACES_DIR=$(cat "$ROOT/fdnc/traces.dir" 2>/dev/null)
FDNC_IOCTL_COUNT="$( [[ -f "$ROOT/fdnc/ioctl_count.so" ]] && echo "env LD_PRELOAD=/fdnc/ioctl_count.so FDNC_IOCTL_COUNT_OUT=/tmp/ioctl-count.txt")"
ENV
if [[ $MESA == 1 ]]; then
    cat >>"$ROOT/fdnc/ci.env" <<ENV
FDNC_MESA=1
FDNC_MESA_FRAMES=$MESA_FRAMES
FDNC_MESA_WARMUP=$MESA_WARMUP
FDNC_MESA_TIMEOUT=$(( TIMEOUT * 2 / 5 ))
FDNC_RTT_N=200
ENV
fi

INITRD="$OUT/initramfs.cpio.gz"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet | gzip -1) >"$INITRD"
echo "FDNC-QEMU-CI: initramfs $(du -h "$INITRD" | cut -f1) built at $(elapsed) s"

# Accelerator: /dev/kvm may exist yet fail under nesting (QEMU aborts setting an MSR), so boot
# the kernel once without an initramfs (it panics at once, and -no-reboot ends QEMU) to find out.
accel_args=()
if [[ "$ACCEL" == auto ]]; then
    ACCEL=tcg
    if [[ -r /dev/kvm && -w /dev/kvm ]]; then
        if timeout -k 2 20 "${QEMU_PREFIX[@]}" "$QEMU" -machine "$MACHINE,accel=kvm" -cpu host -m 256M -nodefaults -display none \
            -no-reboot -monitor none -serial none -kernel "$VMLINUZ" -append "panic=-1 quiet" \
            </dev/null >"$OUT/kvm-probe.log" 2>&1; then
            ACCEL=kvm
        else
            echo "FDNC-QEMU-CI: KVM unusable here ($(grep -m1 -E 'error|Assertion' "$OUT/kvm-probe.log" || echo "probe failed")); using TCG"
        fi
    fi
fi
if [[ "$ACCEL" == kvm ]]; then accel_args=(-machine "$MACHINE,accel=kvm" -cpu host); else accel_args=(-machine "$MACHINE,accel=tcg"); fi
[[ "$ACCEL" == tcg && "$HOST_ARCH" == aarch64 ]] && accel_args+=(-cpu max)
echo "FDNC-QEMU-CI: accelerator $ACCEL, GPU device $GPU_DEVICE"

# shellcheck disable=SC2206
extra=($QEMU_ARGS)
display_args=(-display none)
[[ "$HOST" == native ]] && display_args=()
cmd=("${QEMU_PREFIX[@]}" "$QEMU" "${accel_args[@]}" -m 1G -smp 2 -nodefaults "${display_args[@]}" -no-reboot -monitor none
     -kernel "$VMLINUZ" -initrd "$INITRD" -append "console=$CONSOLE panic=-1 quiet"
     -device "$GPU_DEVICE" -chardev "file,id=log,path=$LOG" -serial chardev:log "${extra[@]}")
echo "FDNC-QEMU-CI: timeout $TIMEOUT ${cmd[*]}"
: >"$LOG"
t_boot=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${cmd[@]}" </dev/null >"$QLOG" 2>&1 &
qpid=$!
tail -n +1 -s 0.2 -f --pid="$qpid" "$LOG" &
tpid=$!
# --mesa: at each "FDNC-IOCTL-MARK RUN N" of the guest, note how long the host kernel model's log is
# (the guest sleeps 0.4-0.5 s after each mark, so the host log is quiet meanwhile).
mpid=""
if [[ $MESA == 1 ]]; then
    : >"$OUT/mesa-marks.txt"
    tail -n +1 -s 0.05 -f --pid="$qpid" "$LOG" | while IFS= read -r line; do
        case "$line" in
            FDNC-IOCTL-MARK\ *)
                set -- ${line//$'\r'/}
                echo "$2 $3 $(stat -c %s "$OUT/shim.log" 2>/dev/null || echo 0)" >>"$OUT/mesa-marks.txt" ;;
        esac
    done &
    mpid=$!
fi
# QEMU 11 with egl-headless often hangs at exit in EGL cleanup: once the guest printed its result,
# give it a few seconds to power off, then SIGTERM (timeout passes it on and SIGKILLs 5 s later).
(
    while kill -0 "$qpid" 2>/dev/null; do
        if grep -aq '^FDNC-GUEST-RESULT:' "$LOG" 2>/dev/null; then
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || exit 0; sleep 0.5; done
            echo "FDNC-QEMU-CI: QEMU still running 5 s after the guest's result: stopping it"
            kill -TERM "$qpid" 2>/dev/null
            exit 0
        fi
        sleep 0.5
    done
) &
wpid=$!
set +e
wait "$qpid"
qrc=$?
wait "$tpid"
[[ -n "$mpid" ]] && wait "$mpid"
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
set -e
stopped_by_us=0
if [[ $qrc -ne 0 ]] && grep -aq '^FDNC-GUEST-RESULT:' "$LOG"; then stopped_by_us=1; fi
t_end=$(date +%s.%N)
run_s=$(awk -v a="$t_boot" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
user_s=$(grep -a -m1 'FDNC-GUEST: userspace reached at' "$LOG" | awk '{ print $5 }' || true)

[[ -s "$QLOG" ]] && sed 's/^/FDNC-QEMU-CI: qemu: /' "$QLOG"
if [[ "$KEEP" == 0 ]]; then rm -rf "$ROOT" "$INITRD"; fi

marker=$(grep -a '^FDNC-GUEST-RESULT:' "$LOG" | tail -1 | tr -d '\r' || true)
echo "FDNC-QEMU-CI: guest userspace at ${user_s:-?} s (guest uptime), QEMU ran ${run_s} s, total $(elapsed) s, accel $ACCEL, QEMU exit $qrc; log: $LOG"
native_log_ok=1
if [[ "$HOST" == native ]]; then
    native_check_shim_log "$OUT/shim.log" || native_log_ok=0
fi
mesa_ok=1
if [[ $MESA == 1 ]]; then
    python3 "$FDNC_ROOT/scripts/qemu/mesa_report.py" "$LOG" "$OUT/mesa-marks.txt" "$OUT/shim.log" "$OUT/mesa-table.md" || mesa_ok=0
fi
if [[ $stopped_by_us -eq 0 && ( $qrc -eq 124 || $qrc -eq 137 ) ]]; then
    echo "FDNC-QEMU-CI: TIMEOUT: the guest did not finish within $TIMEOUT s" >&2
    exit 3
fi
case "$marker" in
    "FDNC-GUEST-RESULT: pass"*)
        if [[ $mesa_ok -eq 0 ]]; then
            echo "FDNC-QEMU-CI: FAIL (the guest passed, a Mesa run did not: see FDNC-MESA-HOST above) (${marker#FDNC-GUEST-RESULT: })" >&2
            exit 1
        fi
        if [[ $native_log_ok -eq 0 ]]; then
            echo "FDNC-QEMU-CI: FAIL (the guest passed, the host-side shim log did not: see above) (${marker#FDNC-GUEST-RESULT: })" >&2
            exit 1
        fi
        echo "FDNC-QEMU-CI: PASS (${marker#FDNC-GUEST-RESULT: })"; exit 0 ;;
    "FDNC-GUEST-RESULT: fail"*) echo "FDNC-QEMU-CI: FAIL (${marker#FDNC-GUEST-RESULT: })" >&2; exit 1 ;;
esac
if [[ $qrc -ne 0 && $stopped_by_us -eq 0 ]]; then
    echo "FDNC-QEMU-CI: QEMU FAILED with exit $qrc before the guest printed a result (see $QLOG)" >&2
    exit 4
fi
echo "FDNC-QEMU-CI: NO RESULT: QEMU exited but the guest printed no FDNC-GUEST-RESULT line (see $LOG)" >&2
exit 5
