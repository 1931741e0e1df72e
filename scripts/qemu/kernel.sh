# shellcheck shell=bash
# Guest kernel for scripts/qemu-ci.sh (sourced). Debian's linux-image-*-<arch> is fetched with
# `apt-get download` and unpacked with `dpkg -x` (no install, no initramfs hooks); the cache keeps
# only vmlinuz and the virtio-gpu modules, decompressed, in load order.
#
# qemu_ci_kernel CACHE_DIR  ->  sets QK_VMLINUZ, QK_MODULES_DIR (holds *.ko + modules.order), QK_PACKAGE
#
# QK_SUITE (optional, e.g. trixie): take the kernel from that Debian suite instead of the machine's
# own, through a private apt configuration (sources list for the suite, from the archive URI in the
# machine's debian.sources; own lists/state under CACHE_DIR/apt-<suite>); nothing is installed.

# The modules a virtio-gpu-pci device needs; their dependencies come from modules.dep.
QK_WANTED_MODULES=(virtio_pci virtio_gpu)

qk_die() { echo "FDNC-QEMU-CI: ERROR: $*" >&2; exit 2; }

qk_sudo() { if [[ $(id -u) -ne 0 ]]; then sudo "$@"; else "$@"; fi; }

# Debian's kernel flavour for this machine (amd64, arm64).
QK_ARCH=$(dpkg --print-architecture)

# The kernel package linux-image-$QK_ARCH depends on, else the newest linux-image-<ver>-$QK_ARCH.
QK_APT_OPTS=()

# A private apt configuration for QK_SUITE (sid-root.sh's sr_archive_uri gives the archive URI).
qk_suite_apt() {
    local cache="$1" dir uri
    dir="$(realpath -m "$cache/apt-$QK_SUITE")"
    # shellcheck source=scripts/qemu/sid-root.sh
    source "$(dirname "${BASH_SOURCE[0]}")/sid-root.sh"
    uri=$(sr_archive_uri)
    [[ -n "$uri" ]] || qk_die "no Debian archive URI in the machine's apt sources"
    mkdir -p "$dir"/{etc/sources.list.d,etc/preferences.d,state/lists/partial,cache/archives/partial}
    [[ -f "$dir/state/status" ]] || : >"$dir/state/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $QK_SUITE main" >"$dir/etc/sources.list"
    QK_APT_OPTS=(-o "Dir::Etc::SourceList=$dir/etc/sources.list" -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
                 -o "Dir::Etc::Preferences=$dir/etc/preferences" -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
                 -o "Dir::State=$dir/state" -o "Dir::State::Lists=$dir/state/lists"
                 -o "Dir::State::status=$dir/state/status" -o "Dir::Cache=$dir/cache"
                 -o "Dir::Cache::archives=$dir/cache/archives" -o "Debug::NoLocking=true" -o "APT::Sandbox::User=root")
    if [[ ! -f "$dir/updated" ]]; then
        apt-get "${QK_APT_OPTS[@]}" update -qq >&2 || qk_die "apt-get update of $QK_SUITE from $uri failed"
        touch "$dir/updated"
    fi
}

qk_pick_package() {
    local pkg
    pkg=$(apt-cache "${QK_APT_OPTS[@]}" depends "linux-image-$QK_ARCH" 2>/dev/null |
          awk -v a="$QK_ARCH" '$1 == "Depends:" && $2 ~ "^linux-image-[0-9].*-" a "$" { print $2; exit }')
    if [[ -z "$pkg" ]]; then
        pkg=$(apt-cache "${QK_APT_OPTS[@]}" search --names-only "^linux-image-[0-9][0-9.]*-[0-9]+-$QK_ARCH\$" 2>/dev/null |
              awk '{ print $1 }' | sort -V | tail -1)
    fi
    echo "$pkg"
}

qemu_ci_kernel() {
    local cache="$1" pkg
    [[ -n "${QK_SUITE:-}" ]] && qk_suite_apt "$cache"
    pkg=$(qk_pick_package)
    if [[ -z "$pkg" && -z "${QK_SUITE:-}" ]]; then
        echo "FDNC-QEMU-CI: no linux-image-*-$QK_ARCH in the apt lists; running apt-get update" >&2
        qk_sudo apt-get update -qq || qk_die "apt-get update failed: cannot reach the Debian archive"
        pkg=$(qk_pick_package)
    fi
    [[ -n "$pkg" ]] || qk_die "no Debian guest kernel package (linux-image-*-$QK_ARCH) is known to apt;" \
        "add a Debian main archive to the sources or pass --kernel"
    QK_PACKAGE="$pkg"
    local dir="$cache/$pkg"
    QK_VMLINUZ="$dir/vmlinuz"
    QK_MODULES_DIR="$dir/modules"
    if [[ -f "$dir/complete" ]]; then
        echo "FDNC-QEMU-CI: guest kernel $pkg from the cache ($dir)"
        return 0
    fi

    echo "FDNC-QEMU-CI: fetching guest kernel package $pkg"
    local work
    rm -rf "$cache"/.fetch.* # left by an interrupted run
    work=$(realpath "$(mktemp -d "$cache/.fetch.XXXXXX")")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    # _apt cannot write into a root-owned mktemp dir; the download then runs unsandboxed (harmless).
    if ! (cd "$work" && apt-get "${QK_APT_OPTS[@]}" download "$pkg" >"$work/download.log" 2>&1); then
        cat "$work/download.log" >&2
        qk_die "apt-get download $pkg failed: no network to the Debian package archive?" \
            "(the QEMU CI job needs a guest kernel; pass --kernel PATH to use a local one)"
    fi
    local deb
    local debs=("$work"/*.deb)
    deb=${debs[0]}
    [[ -f "$deb" ]] || qk_die "apt-get download $pkg produced no .deb"
    dpkg -x "$deb" "$work/x" || qk_die "dpkg -x $deb failed"

    local kver vmlinuz
    local kernels=("$work"/x/boot/vmlinuz-*)
    vmlinuz=${kernels[0]}
    [[ -f "$vmlinuz" ]] || qk_die "$pkg has no /boot/vmlinuz-*"
    kver=${vmlinuz##*/vmlinuz-}
    local moddir="$work/x/lib/modules/$kver"
    [[ -d "$moddir" ]] || moddir="$work/x/usr/lib/modules/$kver"
    [[ -d "$moddir" ]] || qk_die "$pkg has no modules directory for $kver"
    if [[ ! -f "$moddir/modules.dep" ]]; then
        # Debian ships no modules.dep (depmod runs at install time): generate it.
        command -v depmod >/dev/null || qk_die "depmod (package kmod) is missing"
        depmod -b "${moddir%/lib/modules/*}" "$kver" || qk_die "depmod failed for $kver"
    fi

    # modules.dep lists each module's full dependency closure, the deepest last: load in reverse.
    local -A path_of=() deps_of=() builtin=() loaded=()
    local line mod rel
    while IFS= read -r line; do
        rel=${line%%:*}
        mod=$(basename "$rel"); mod=${mod%%.ko*}; mod=${mod//-/_}
        path_of[$mod]=$rel
        deps_of[$mod]=${line#*:}
    done <"$moddir/modules.dep"
    if [[ -f "$moddir/modules.builtin" ]]; then
        while IFS= read -r rel; do
            mod=$(basename "$rel"); mod=${mod%%.ko*}; mod=${mod//-/_}
            builtin[$mod]=1
        done <"$moddir/modules.builtin"
    fi
    local order=() w d deps
    for w in "${QK_WANTED_MODULES[@]}"; do
        if [[ -n "${builtin[$w]:-}" ]]; then echo "FDNC-QEMU-CI: $w is built into $kver"; continue; fi
        [[ -n "${path_of[$w]:-}" ]] || qk_die "$kver has no module $w (needed for virtio-gpu)"
        read -r -a deps <<<"${deps_of[$w]}"
        local i
        for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
            d=$(basename "${deps[i]}"); d=${d%%.ko*}; d=${d//-/_}
            [[ -n "${loaded[$d]:-}" ]] || { loaded[$d]=1; order+=("$d"); }
        done
        [[ -n "${loaded[$w]:-}" ]] || { loaded[$w]=1; order+=("$w"); }
    done

    rm -rf "$dir"
    mkdir -p "$QK_MODULES_DIR"
    cp "$vmlinuz" "$QK_VMLINUZ"
    : >"$QK_MODULES_DIR/modules.order"
    local src
    for mod in "${order[@]}"; do
        src="$moddir/${path_of[$mod]}"
        # busybox insmod cannot decompress: store plain .ko files.
        case "$src" in
            *.ko.xz) xz -dc "$src" >"$QK_MODULES_DIR/$mod.ko" ;;
            *.ko.zst) zstd -dqc "$src" >"$QK_MODULES_DIR/$mod.ko" ;;
            *.ko.gz) gzip -dc "$src" >"$QK_MODULES_DIR/$mod.ko" ;;
            *) cp "$src" "$QK_MODULES_DIR/$mod.ko" ;;
        esac || qk_die "cannot decompress $src"
        echo "$mod.ko" >>"$QK_MODULES_DIR/modules.order"
    done
    echo "$pkg $kver" >"$dir/version"
    touch "$dir/complete"
    echo "FDNC-QEMU-CI: cached $pkg ($kver): vmlinuz + ${#order[@]} modules: ${order[*]}"
}
