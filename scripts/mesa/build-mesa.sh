#!/usr/bin/env bash
# Build Mesa 25.0.7's freedreno driver (gallium GL/GLES over EGL, msm + virtio kmds) and Mesa's own
# freedreno no-op drm-shim from ../shared/third_party/ into a cache folder outside the checkout
# (PROTOCOL.md §13.3). Mesa is a test fixture, never part of fdnc: nothing is copied into the repo.
#
#   prefix=$(bash scripts/mesa/build-mesa.sh)
#
# Everything is logged to stderr; the last stdout line is the install prefix (lib/ holds
# libEGL_mesa.so.0, libgallium-25.0.7.so, libfreedreno_noop_drm_shim.so; share/glvnd/egl_vendor.d/
# holds 50_mesa.json). scripts/mesa/run-gl.sh runs a GL program against it.
#
# Cache: $FDNC_CACHE_DIR/mesa-25.0.7-<sha16>-<cfg12>/ where sha16 is the tarball's sha256 and cfg12
# the sha256 of the meson options below; build/ and install/ inside. A cache is used only once its
# stamp file exists (a cached run returns at once); one without a stamp is a half-finished build and
# is removed and rebuilt.
#
# meson: Mesa 25.0.7 needs meson >= 1.1; bookworm has 1.0.1. The meson package of bookworm-backports
# is fetched with a private apt configuration (scripts/lib/debian_apt.sh; the archive URI is read
# from the machine's apt sources at run time), unpacked with `dpkg -x` into
# $FDNC_CACHE_DIR/meson-bookworm-backports-<key>/ and run with /usr/bin/python3. Nothing of it is
# installed on the machine. The other build dependencies are installed as Debian packages.
#
# Environment:
#   FDNC_CACHE_DIR        cache root (default /var/cache/fdnc)
#   FDNC_THIRD_PARTY      folder holding the tarball (default <checkout>/../shared/third_party)
#   FDNC_MESA_VULKAN      meson -Dvulkan-drivers value (default empty: no Turnip, see README.md)
#   FDNC_MESA_JOBS        ninja -j (default: ninja's own choice)
set -euo pipefail

# A pyenv python3 first on PATH breaks meson's python lookup: the system one first.
export PATH="/usr/bin:/bin:$PATH"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
THIRD_PARTY="${FDNC_THIRD_PARTY:-$ROOT/../shared/third_party}"
TARBALL="$THIRD_PARTY/mesa-25.0.7.tar.xz"
EXPECTED_SHA256=592272df3cf01e85e7db300c449df5061092574d099da275d19e97ef0510f8a6
CACHE_ROOT="${FDNC_CACHE_DIR:-/var/cache/fdnc}"
VULKAN="${FDNC_MESA_VULKAN:-}"
MESON_MIN=1.1

# What Mesa's configure needs on Debian 12 (found by running it): meson's dependencies are
# python3 only; Mesa's generators use mako, ply and packaging; glslang-tools for the built-in
# shaders; libglvnd-dev so that EGL is a glvnd vendor (50_mesa.json).
PACKAGES=(ninja-build pkg-config gcc g++ python3 python3-mako python3-ply python3-packaging
          python3-yaml glslang-tools bison flex libdrm-dev libexpat1-dev libzstd-dev libelf-dev
          zlib1g-dev libglvnd-dev xz-utils)

# shellcheck disable=SC2054  # the commas are inside meson list values
MESA_OPTIONS=(--wrap-mode=nodownload --buildtype=release --libdir=lib
              -Dgallium-drivers=freedreno -Dvulkan-drivers="$VULKAN" -Dfreedreno-kmds=msm,virtio
              -Dplatforms= -Dglx=disabled -Degl=enabled -Dgbm=disabled -Dglvnd=enabled
              -Dllvm=disabled -Dvalgrind=disabled -Dtools=drm-shim)

log() { echo "build-mesa: $*" >&2; }
die() { log "error: $*"; exit 1; }

source "$ROOT/scripts/lib/packages.sh"
source "$ROOT/scripts/lib/debian_apt.sh"

# Everything below runs from one function: bash parses it whole before running it, so editing this
# file while a (long) build runs cannot derail the running script.
main() {
START=$SECONDS

[[ -f "$TARBALL" ]] || die "tarball not found: $TARBALL"
sha="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
[[ "$sha" == "$EXPECTED_SHA256" ]] || die "sha256 mismatch for $TARBALL: $sha (expected $EXPECTED_SHA256)"

cfg="$(printf '%s\n' "${MESA_OPTIONS[@]}" | sha256sum | cut -c1-12)"
CACHE="$CACHE_ROOT/mesa-25.0.7-${sha:0:16}-$cfg"
STAMP="$CACHE/.fdnc-built"
PREFIX="$CACHE/install"

if [[ -f "$STAMP" && -f "$PREFIX/lib/libEGL_mesa.so.0" ]]; then
  log "cached: $CACHE"
  echo "$PREFIX"
  exit 0
fi

fdnc_install_packages "${PACKAGES[@]}"

# --- meson >= 1.1 from bookworm-backports, unpacked, not installed ---------------------------------
# Sets MESON (a command array).
fetch_meson() {
  local uri key dir
  uri="$(fdnc_debian_archive_uri)"
  [[ -n "$uri" ]] || die "no Debian archive URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  key="$(printf '%s\n' "$uri" bookworm-backports meson | sha256sum | cut -c1-12)"
  dir="$CACHE_ROOT/meson-bookworm-backports-$key"
  # Debian's /usr/bin/meson imports mesonbuild from the system path; a launcher beside the unpacked
  # mesonbuild/ makes the unpacked copy importable and is what meson records for its own
  # regeneration rules ([/usr/bin/python3, <dir>/meson.py]).
  local launcher="$dir/root/usr/lib/python3/dist-packages/meson.py"
  if [[ ! -f "$dir/complete" ]]; then
    log "fetching meson from bookworm-backports ($uri) into $dir"
    rm -rf "$dir"
    mkdir -p "$dir/root" "$dir/debs"
    fdnc_private_apt_config "$dir/apt" bookworm-backports "$uri" || die "no private apt configuration"
    apt-get "${FDNC_APT_OPTS[@]}" update -q >"$dir/apt-update.log" 2>&1 ||
      { tail -20 "$dir/apt-update.log" >&2; die "apt-get update of bookworm-backports failed (see $dir/apt-update.log)"; }
    (cd "$dir/debs" && apt-get "${FDNC_APT_OPTS[@]}" download -q meson) >"$dir/apt-download.log" 2>&1 ||
      { tail -20 "$dir/apt-download.log" >&2; die "apt-get download meson failed (see $dir/apt-download.log)"; }
    local deb
    deb="$(ls "$dir"/debs/meson_*.deb)"
    dpkg -x "$deb" "$dir/root" || die "dpkg -x $deb failed"
    [[ -d "$dir/root/usr/lib/python3/dist-packages/mesonbuild" ]] || die "$deb has no mesonbuild/"
    printf '%s\n' 'import sys' 'from mesonbuild.mesonmain import main' 'sys.exit(main())' >"$launcher"
    basename "$deb" | sed -n 's/^meson_\([^_]*\)_.*/\1/p' | sed 's/%3a/:/; s/^[0-9]*://' >"$dir/version"
    rm -rf "$dir/debs" "$dir/apt/cache/archives"/*.deb
    touch "$dir/complete"
  fi
  MESON=(/usr/bin/python3 "$launcher")
  local v
  v="$("${MESON[@]}" --version)" || die "the unpacked meson does not run"
  [[ "$(printf '%s\n' "$MESON_MIN" "$v" | sort -V | head -1)" == "$MESON_MIN" ]] ||
    die "meson $v from bookworm-backports is older than $MESON_MIN"
  log "meson $v ($dir)"
}
fetch_meson

if [[ -e "$CACHE" ]]; then
  log "removing incomplete cache $CACHE"
  rm -rf "$CACHE"
fi
mkdir -p "$CACHE"
log "extracting into $CACHE"
tar -xJf "$TARBALL" -C "$CACHE"
SRC="$CACHE/mesa-25.0.7"
[[ -f "$SRC/meson.build" ]] || die "unexpected tarball layout (no mesa-25.0.7/meson.build)"

log "configuring: ${MESA_OPTIONS[*]}"
t0=$SECONDS
"${MESON[@]}" setup "$CACHE/build" "$SRC" --prefix="$PREFIX" "${MESA_OPTIONS[@]}" >&2
t_conf=$((SECONDS - t0))
log "building"
t0=$SECONDS
jobs=()
[[ -n "${FDNC_MESA_JOBS:-}" ]] && jobs=(-j "$FDNC_MESA_JOBS")
ninja -C "$CACHE/build" "${jobs[@]}" >&2
t_build=$((SECONDS - t0))
"${MESON[@]}" install -C "$CACHE/build" --quiet >&2
for f in lib/libEGL_mesa.so.0 lib/libfreedreno_noop_drm_shim.so share/glvnd/egl_vendor.d/50_mesa.json; do
  [[ -e "$PREFIX/$f" ]] || die "the build installed no $PREFIX/$f"
done
# The sources are not needed any more (the build keeps what it generated).
rm -rf "$SRC"
size="build $(du -sm "$CACHE/build" | cut -f1) MB, install $(du -sm "$PREFIX" | cut -f1) MB"
echo "$sha  $(basename "$TARBALL") cfg=$cfg ${MESA_OPTIONS[*]} configure=${t_conf}s build=${t_build}s $size" >"$STAMP"
log "built $PREFIX (configure ${t_conf}s, build ${t_build}s, $size)"
log "elapsed $((SECONDS - START))s"
echo "$PREFIX"
}

main "$@"
