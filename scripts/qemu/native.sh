# shellcheck shell=bash
# The native host of scripts/qemu-ci.sh (sourced): QEMU 11 from a Debian sid root, the real
# virglrenderer 1.3 and fdnc's msm kernel model (PROTOCOL.md §13.1).
#
# native_prepare  ->  0 and NATIVE_PREFIX (the command words before the QEMU binary: env + the sid
#                     root's loader), NATIVE_QEMU, NATIVE_QEMU_VERSION, NATIVE_NODE; or 1 and
#                     NATIVE_WHY. Needs FDNC_ROOT, FDNC_BUILD, OUT.
# native_check_shim_log FILE  ->  checks the host kernel model's log after a run, prints a summary.

NATIVE_NODE=/dev/dri/renderD128

native_prepare() {
    local cache="${FDNC_CACHE_DIR:-/var/cache/fdnc}" t0
    t0=$(date +%s)
    NATIVE_WHY=""
    local shim="$FDNC_BUILD/src/drm_shim/libfdnc_drm_shim.so"
    [[ -f "$shim" ]] || { NATIVE_WHY="$shim is not built"; return 1; }
    local server
    if ! server=$(bash "$FDNC_ROOT/scripts/realhost/build-virglrenderer.sh" | tail -n 1) || [[ ! -x "$server" ]]; then
        NATIVE_WHY="building virglrenderer 1.3 failed (scripts/realhost/build-virglrenderer.sh)"
        return 1
    fi
    local virgl_lib
    virgl_lib="$(cd "$(dirname "$server")/../src" && pwd)"
    [[ -f "$virgl_lib/libvirglrenderer.so.1" ]] || { NATIVE_WHY="no libvirglrenderer.so.1 in $virgl_lib"; return 1; }
    grep -q 'platforms=egl' "$(dirname "$(dirname "$(dirname "$server")")")/.fdnc-built" 2>/dev/null ||
        echo "FDNC-QEMU-CI: warning: virglrenderer was not built with -Dplatforms=egl: QEMU will not start its DRM renderer" >&2
    # shellcheck source=scripts/qemu/sid-root.sh
    source "$FDNC_ROOT/scripts/qemu/sid-root.sh"
    # sid_root_prepare exits on failure: run it in a subshell first so auto can fall back.
    if ! (sid_root_prepare "$cache"); then
        NATIVE_WHY="the Debian sid root with QEMU 11 could not be prepared"
        return 1
    fi
    sid_root_prepare "$cache" 2>/dev/null
    local root="$SR_ROOT" lib="$SR_ROOT/usr/lib/x86_64-linux-gnu"
    local loader="$root/usr/lib64/ld-linux-x86-64.so.2"
    # The shim is built against this machine's (older) glibc; sid's is newer, so it must load there.
    if ! "$loader" --library-path "$virgl_lib:$lib" --preload "$shim" "$root/usr/bin/qemu-system-x86_64" --version \
        >"$OUT/native-probe.log" 2>&1; then
        NATIVE_WHY="QEMU 11 does not start through the sid loader with the shim preloaded: $(head -2 "$OUT/native-probe.log" | tr '\n' ' ')"
        return 1
    fi
    # Mesa (sid) must not drive the fake msm node as a GPU for QEMU's own EGL display: its loader
    # would pick freedreno; kms_swrast is software rendering on the node's GBM device.
    NATIVE_PREFIX=(env "GBM_BACKENDS_PATH=$lib/gbm" "QEMU_MODULE_DIR=$lib/qemu"
                   "MESA_LOADER_DRIVER_OVERRIDE=kms_swrast"
                   "__EGL_VENDOR_LIBRARY_DIRS=$root/usr/share/glvnd/egl_vendor.d"
                   "FDNC_SHIM_NODE=$NATIVE_NODE" "FDNC_SHIM_LOG=$OUT/shim.log" "FDNC_SHIM_STATS=$OUT/shim-stats.json"
                   "$loader" --library-path "$virgl_lib:$lib" --preload "$shim")
    NATIVE_QEMU="$root/usr/bin/qemu-system-x86_64"
    NATIVE_QEMU_VERSION=$(sed -n 's/^QEMU emulator version \([0-9][0-9.]*\).*/\1/p' "$OUT/native-probe.log")
    NATIVE_QEMU_ARGS="-L $root/usr/share/qemu -L $root/usr/share/seabios"
    rm -f "$OUT/shim.log" "$OUT/shim-stats.json"
    echo "FDNC-QEMU-CI: native host ready in $(($(date +%s) - t0)) s: QEMU $NATIVE_QEMU_VERSION ($root), virglrenderer $virgl_lib, shim $shim"
    return 0
}

# After the run: fdnc's GEM_NEW + SET_IOVA reached the kernel model at the guest's iovas, and no
# call failed beyond the renderer's init probes (GET_UNIQUE, the CACHED_COHERENT GEM_NEW, the
# preemption SUBMITQUEUE_NEW).
native_check_shim_log() {
    local log="$1"
    if [[ ! -s "$log" ]]; then
        echo "FDNC-QEMU-CI: shim log: $log is empty: the native context never reached the kernel model" >&2
        return 1
    fi
    python3 - "$log" <<'PY'
import sys
gem_new = set_iova = clears = files = probes = outside = 0
bad = []
va_start = va_size = None
CACHED_COHERENT, PREEMPT = 0x80000, 0x1  # MSM_BO_CACHED_COHERENT, MSM_SUBMITQUEUE_ALLOW_PREEMPT
for line in open(sys.argv[1], errors="replace"):
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 2:
        continue
    name, res = parts[0], parts[1]
    kv = dict(x.split("=", 1) for x in (parts[2] if len(parts) > 2 else "").split() if "=" in x)
    flags = int(kv.get("flags", "0"), 0)
    if name == "OPEN":
        files += 1
    if res == "0":
        if name == "MSM_GET_PARAM" and kv.get("param") in ("VA_START", "VA_SIZE"):
            v = int(kv.get("value", "0"), 0)
            if kv["param"] == "VA_START":
                va_start = v
            else:
                va_size = v
        elif name == "MSM_GEM_NEW" and not flags & CACHED_COHERENT:  # not the renderer's probe
            gem_new += 1
        elif name == "MSM_GEM_INFO" and kv.get("info") == "SET_IOVA":
            v = int(kv.get("value", "0"), 0)
            if v == 0:
                clears += 1
            else:
                set_iova += 1
                if va_start is not None and va_size and not va_start <= v < va_start + va_size:
                    outside += 1
        continue
    if name == "GET_UNIQUE" or (name == "MSM_GEM_NEW" and flags & CACHED_COHERENT) or \
            (name == "MSM_SUBMITQUEUE_NEW" and flags & PREEMPT):
        probes += 1
    else:
        bad.append(line.rstrip())
for b in bad[:10]:
    print("FDNC-QEMU-CI: shim log: failing call:", b, file=sys.stderr)
ok = not bad and gem_new > 0 and set_iova >= gem_new and outside == 0
print(f"FDNC-QEMU-CI: shim log: {'ok' if ok else 'NOT OK'}: {files} drm files; GEM_NEW {gem_new} (besides the "
      f"renderer's probes), SET_IOVA {set_iova} to guest iovas ({outside} outside the VA range) + {clears} "
      f"clears (SET_IOVA 0); {probes} failing init probes (GET_UNIQUE, CACHED_COHERENT GEM_NEW, preemption "
      f"SUBMITQUEUE_NEW), {len(bad)} other failing calls")
sys.exit(0 if ok else 1)
PY
}
