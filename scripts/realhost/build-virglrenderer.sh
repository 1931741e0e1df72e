#!/usr/bin/env bash
# Build the real host renderer (virglrenderer 1.3.0, msm native-context renderer) from
# ../shared/third_party/ into a cache folder outside the checkout, keyed by the tarball's sha256.
#
#   server=$(bash scripts/realhost/build-virglrenderer.sh)
#
# Everything is logged to stderr; the last (only) stdout line is the path of virgl_test_server.
# Idempotent: a cache with a stamp file is reused as is; a cache without one (a half-finished build)
# is removed and rebuilt.
#
# Environment:
#   FDNC_CACHE_DIR   cache root (default /var/cache/fdnc)
#   FDNC_THIRD_PARTY folder holding the tarball (default <checkout>/../shared/third_party)
#   FDNC_VIRGL_PLATFORMS  meson -Dplatforms value (default egl: QEMU's egl-headless needs it)
set -euo pipefail

# A pyenv python first on PATH breaks meson's python lookup.
export PATH="/usr/bin:/bin:$PATH"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
THIRD_PARTY="${FDNC_THIRD_PARTY:-$ROOT/../shared/third_party}"
TARBALL="$THIRD_PARTY/virglrenderer-1.3.0.tar.xz"
EXPECTED_SHA256=7970379362aa12caa6f90a1b687afb86407759ac0c72ddd3c26cb1814b884bdf
PLATFORMS="${FDNC_VIRGL_PLATFORMS:-egl}"
PACKAGES=(meson ninja-build pkg-config gcc libdrm-dev libepoxy-dev libgbm-dev xz-utils)

log() { echo "build-virglrenderer: $*" >&2; }
die() { log "error: $*"; exit 1; }

source "$ROOT/scripts/lib/packages.sh"

[[ -f "$TARBALL" ]] || die "tarball not found: $TARBALL"
sha="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
[[ "$sha" == "$EXPECTED_SHA256" ]] || die "sha256 mismatch for $TARBALL: $sha (expected $EXPECTED_SHA256)"

CACHE="${FDNC_CACHE_DIR:-/var/cache/fdnc}/virglrenderer-1.3.0-${sha:0:16}"
STAMP="$CACHE/.fdnc-built"
SERVER="$CACHE/build/vtest/virgl_test_server"

if [[ -f "$STAMP" && -x "$SERVER" ]]; then
  log "cached: $CACHE"
  echo "$SERVER"
  exit 0
fi

fdnc_install_packages "${PACKAGES[@]}"

if [[ -e "$CACHE" ]]; then
  log "removing incomplete cache $CACHE"
  rm -rf "$CACHE"
fi
mkdir -p "$CACHE"
log "extracting into $CACHE"
tar -xJf "$TARBALL" -C "$CACHE"
SRC="$CACHE/virglrenderer-1.3.0"
[[ -f "$SRC/meson.build" ]] || die "unexpected tarball layout (no virglrenderer-1.3.0/meson.build)"

log "configuring (platforms=$PLATFORMS)"
meson setup "$CACHE/build" "$SRC" --wrap-mode=nodownload \
  -Dbuildtype=debug -Ddrm-renderers=msm -Dplatforms="$PLATFORMS" -Dvenus=false -Dvideo=false \
  -Dtests=false -Dcheck-gl-errors=false >&2
log "building"
ninja -C "$CACHE/build" >&2
[[ -x "$SERVER" ]] || die "build finished without $SERVER"
echo "$sha  $(basename "$TARBALL") platforms=$PLATFORMS" > "$STAMP"
log "built $SERVER"
echo "$SERVER"
