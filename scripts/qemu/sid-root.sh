# shellcheck shell=bash
# A Debian sid root holding QEMU 11 with its OpenGL display module, for scripts/qemu-ci.sh --host
# native (sourced). Nothing is installed on the machine: apt runs with a private configuration (its
# own sources list, lists, status and archive dirs under the cache), resolves the packages'
# dependency closure against an empty status file, downloads the .debs and `dpkg -x` unpacks each
# into ROOT. QEMU then runs through ROOT's own dynamic loader (PROTOCOL.md §13.1).
#
# sid_root_prepare CACHE_BASE  ->  sets SR_ROOT (the unpacked root), SR_QEMU_VERSION
#
# The archive URI comes from the machine's /etc/apt/sources.list.d/debian.sources (or
# /etc/apt/sources.list) at run time: the first stanza that serves the main suite
# (scripts/lib/debian_apt.sh, which also sets up the private apt configuration).

SR_PACKAGES=(qemu-system-x86 qemu-system-modules-opengl qemu-system-common qemu-system-data seabios
             libegl1 libegl-mesa0 libgles2 libglvnd0 libopengl0)

sr_die() { echo "FDNC-QEMU-CI: ERROR: $*" >&2; exit 2; }
sr_log() { echo "FDNC-QEMU-CI: sid root: $*" >&2; }

# shellcheck source=scripts/lib/debian_apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian_apt.sh"

# The Debian archive URI this machine's apt uses for its main suite (scripts/qemu/kernel.sh uses it too).
sr_archive_uri() { fdnc_debian_archive_uri; }

sid_root_prepare() {
    local base="$1" uri key
    uri=$(sr_archive_uri)
    [[ -n "$uri" ]] || sr_die "no Debian archive URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    key=$(printf '%s\n' "$uri" "${SR_PACKAGES[@]}" | sha256sum | cut -c1-12)
    local dir="$base/qemu-sid-root-$key"
    SR_ROOT="$dir/root"
    if [[ -f "$dir/complete" ]]; then
        SR_QEMU_VERSION=$(cat "$dir/qemu-version")
        sr_log "cached: $dir (QEMU $SR_QEMU_VERSION)"
        return 0
    fi
    sr_log "preparing $dir from $uri sid (once per machine)"
    rm -rf "$dir"
    mkdir -p "$dir/root"
    fdnc_private_apt_config "$dir/apt" sid "$uri" ||
        sr_die "/usr/share/keyrings/debian-archive-keyring.gpg missing (package debian-archive-keyring)"
    SR_APT_OPTS=("${FDNC_APT_OPTS[@]}")
    apt-get "${SR_APT_OPTS[@]}" update -q >"$dir/apt-update.log" 2>&1 ||
        { tail -20 "$dir/apt-update.log" >&2; sr_die "apt-get update of sid from $uri failed (see $dir/apt-update.log)"; }
    # An empty status file: apt resolves the whole closure (libc6 included) and downloads it.
    DEBIAN_FRONTEND=noninteractive apt-get "${SR_APT_OPTS[@]}" install -y -q --download-only \
        "${SR_PACKAGES[@]}" >"$dir/apt-download.log" 2>&1 ||
        { tail -30 "$dir/apt-download.log" >&2; sr_die "resolving/downloading the sid closure failed (see $dir/apt-download.log)"; }
    local debs=("$dir"/apt/cache/archives/*.deb) d n=0
    [[ -f "${debs[0]}" ]] || sr_die "apt downloaded no .deb (see $dir/apt-download.log)"
    for d in "${debs[@]}"; do
        dpkg -x "$d" "$dir/root" || sr_die "dpkg -x $d failed"
        n=$((n + 1))
    done
    # usrmerge: sid's packages ship /usr/lib64/ld-linux-x86-64.so.2 (and /lib64 links when unmerged).
    [[ -x "$dir/root/usr/lib64/ld-linux-x86-64.so.2" || -e "$dir/root/lib64/ld-linux-x86-64.so.2" ]] ||
        sr_die "the sid root has no ld-linux-x86-64.so.2"
    [[ -x "$dir/root/usr/bin/qemu-system-x86_64" ]] || sr_die "the sid root has no qemu-system-x86_64"
    local qv
    qv=$(ls "$dir"/apt/cache/archives/qemu-system-x86_*.deb | sed -n 's/.*qemu-system-x86_\([^_]*\)_.*/\1/p' | sed 's/%3a/:/; s/^[0-9]*://')
    echo "${qv:-unknown}" >"$dir/qemu-version"
    du -sm "$dir/apt/cache/archives" | cut -f1 >"$dir/download-mb"
    # The .debs are not needed once unpacked.
    rm -rf "$dir/apt/cache/archives"/*.deb
    echo "$n" >"$dir/packages"
    touch "$dir/complete"
    SR_QEMU_VERSION=$(cat "$dir/qemu-version")
    sr_log "unpacked $n packages ($(cat "$dir/download-mb") MB downloaded, $(du -sm "$dir/root" | cut -f1) MB unpacked), QEMU $SR_QEMU_VERSION"
}
