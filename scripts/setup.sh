#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: install the Debian packages fdnc needs
# (only the missing ones, one `apt-get update` first), then configure the build directory.
# Idempotent: a second run installs nothing and reuses the build.
set -euo pipefail

FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FDNC_BUILD="${FDNC_BUILD:-$FDNC_ROOT/build}"

# Build + test dependencies. The core library needs only libdrm and threads; the tools use the rest
# (EGL + GLES2 only for tools/fdnc-glframes, which is skipped without them). gdb reads the core of
# a real virgl_test_server that died in the realhost suite (scripts/realhost/start-server.sh).
FDNC_PACKAGES=(
  meson ninja-build g++ pkg-config
  libdrm-dev zlib1g-dev
  catch2 libbenchmark-dev libcli11-dev nlohmann-json3-dev
  libegl-dev libgles-dev
  python3 gdb
)

source "$FDNC_ROOT/scripts/lib/packages.sh"

fdnc_configure() {
  local builddir="$1"; shift
  if [[ ! -f "$builddir/build.ninja" ]]; then
    meson setup "$builddir" "$FDNC_ROOT" --wrap-mode=nodownload --buildtype=debugoptimized "$@"
  fi
}

fdnc_install_packages "${FDNC_PACKAGES[@]}"
fdnc_configure "$FDNC_BUILD"
