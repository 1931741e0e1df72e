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

Options:
  --build DIR          build directory (default: build, as scripts/test.sh uses)
  --qemu BIN           QEMU binary (default: qemu-system-$(uname -m))
  --machine STRING     -machine type (default: q35 on x86_64, virt on aarch64)
  --gpu-device STRING  the -device string of the GPU (default: virtio-gpu-pci)
  --qemu-args "ARGS"   extra QEMU arguments, word-split (e.g. -object/-accel/-display options)
  --accel auto|kvm|tcg auto (default) probes KVM with a short boot and falls back to TCG
  --kernel PATH        boot this kernel instead of Debian's linux-image-*-<arch>
  --modules DIR        with --kernel: directory of plain .ko files + modules.order (load order);
                       without it the kernel must have virtio-gpu built in
  --expect-native-context
                       fail unless fdnc-info finds a usable native context (a real DRM
                       native-context host); default: "not usable" (exit 2) is accepted
  --replay-args "ARGS" fdnc-replay arguments after --uri (default: "--frames 4 --json -")
  --timeout SECONDS    bound on the guest run (default: 270)
  --keep               keep the staged guest root and the initramfs in build/qemu-ci/
  -h, --help           this text

Files: build/qemu-ci/serial.log (the guest console, kept), build/qemu-ci/qemu.log (QEMU's own
output), build/qemu-cache/ (the unpacked guest kernel and modules, reused).

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
KEEP=0
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
        --modules) MODULES="$(realpath "${2:?}")"; shift 2 ;;
        --expect-native-context) EXPECT_NC=yes; shift ;;
        --replay-args) REPLAY_ARGS="${2?}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?}"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout needs whole seconds"
[[ "$ACCEL" =~ ^(auto|kvm|tcg)$ ]] || die "--accel is auto, kvm or tcg"
[[ -z "$MODULES" || -n "$KERNEL" ]] || die "--modules goes with --kernel"

t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Build dependencies + the build dir (as scripts/test.sh), then the guest's own packages.
export FDNC_BUILD="$BUILD"
# shellcheck source=scripts/setup.sh
source "$FDNC_ROOT/scripts/setup.sh" || die "scripts/setup.sh failed"
QEMU_PACKAGES=(busybox-static cpio gzip xz-utils kmod)
[[ "$QEMU" == "qemu-system-$HOST_ARCH" && -n "$QEMU_PACKAGE" ]] && QEMU_PACKAGES+=("$QEMU_PACKAGE")
[[ -n "$MACHINE" ]] || die "no default QEMU machine for $HOST_ARCH: pass --machine"
fdnc_install_packages "${QEMU_PACKAGES[@]}" || die "cannot install ${QEMU_PACKAGES[*]}"
command -v "$QEMU" >/dev/null || die "QEMU binary $QEMU not found"
ninja -C "$FDNC_BUILD" || die "build failed in $FDNC_BUILD"

OUT="$FDNC_BUILD/qemu-ci"
CACHE="$FDNC_BUILD/qemu-cache"
mkdir -p "$OUT" "$CACHE"
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
"${MESON_PY:-python3}" "$FDNC_ROOT/scripts/qemu/stage.py" "$FDNC_ROOT" "$FDNC_BUILD" "$ROOT" "$TRACES" || die "staging the guest root failed"
# TCG runs code several times slower than the host: stretch each test's meson timeout.
cat >"$ROOT/fdnc/ci.env" <<ENV
FDNC_EXPECT_NC=$EXPECT_NC
FDNC_TIMEOUT_MULT=4
FDNC_REPLAY_ARGS="$REPLAY_ARGS"
ENV

INITRD="$OUT/initramfs.cpio.gz"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet | gzip -1) >"$INITRD"
echo "FDNC-QEMU-CI: initramfs $(du -h "$INITRD" | cut -f1) built at $(elapsed) s"

# Accelerator: /dev/kvm may exist yet fail under nesting (QEMU aborts setting an MSR), so boot
# the kernel once without an initramfs (it panics at once, and -no-reboot ends QEMU) to find out.
accel_args=()
if [[ "$ACCEL" == auto ]]; then
    ACCEL=tcg
    if [[ -r /dev/kvm && -w /dev/kvm ]]; then
        if timeout -k 2 20 "$QEMU" -machine "$MACHINE,accel=kvm" -cpu host -m 256M -nodefaults -display none \
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
cmd=("$QEMU" "${accel_args[@]}" -m 1G -smp 2 -nodefaults -display none -no-reboot -monitor none
     -kernel "$VMLINUZ" -initrd "$INITRD" -append "console=$CONSOLE panic=-1 quiet"
     -device "$GPU_DEVICE" -chardev "file,id=log,path=$LOG" -serial chardev:log "${extra[@]}")
echo "FDNC-QEMU-CI: timeout $TIMEOUT ${cmd[*]}"
: >"$LOG"
t_boot=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${cmd[@]}" </dev/null >"$QLOG" 2>&1 &
qpid=$!
tail -n +1 -s 0.2 -f --pid="$qpid" "$LOG" &
tpid=$!
set +e
wait "$qpid"
qrc=$?
wait "$tpid"
set -e
t_end=$(date +%s.%N)
run_s=$(awk -v a="$t_boot" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
user_s=$(grep -a -m1 'FDNC-GUEST: userspace reached at' "$LOG" | awk '{ print $5 }' || true)

[[ -s "$QLOG" ]] && sed 's/^/FDNC-QEMU-CI: qemu: /' "$QLOG"
if [[ "$KEEP" == 0 ]]; then rm -rf "$ROOT" "$INITRD"; fi

marker=$(grep -a '^FDNC-GUEST-RESULT:' "$LOG" | tail -1 | tr -d '\r' || true)
echo "FDNC-QEMU-CI: guest userspace at ${user_s:-?} s (guest uptime), QEMU ran ${run_s} s, total $(elapsed) s, accel $ACCEL, QEMU exit $qrc; log: $LOG"
if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
    echo "FDNC-QEMU-CI: TIMEOUT: the guest did not finish within $TIMEOUT s" >&2
    exit 3
fi
case "$marker" in
    "FDNC-GUEST-RESULT: pass"*) echo "FDNC-QEMU-CI: PASS (${marker#FDNC-GUEST-RESULT: })"; exit 0 ;;
    "FDNC-GUEST-RESULT: fail"*) echo "FDNC-QEMU-CI: FAIL (${marker#FDNC-GUEST-RESULT: })" >&2; exit 1 ;;
esac
if [[ $qrc -ne 0 ]]; then
    echo "FDNC-QEMU-CI: QEMU FAILED with exit $qrc before the guest printed a result (see $QLOG)" >&2
    exit 4
fi
echo "FDNC-QEMU-CI: NO RESULT: QEMU exited but the guest printed no FDNC-GUEST-RESULT line (see $LOG)" >&2
exit 5
