#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: install the Debian packages fdnc needs
# (only the missing ones, one `apt-get update` first), then configure the build directory.
# Idempotent: a second run installs nothing and reuses the build.
set -euo pipefail

FDNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FDNC_BUILD="${FDNC_BUILD:-$FDNC_ROOT/build}"

# Build + test dependencies. The core library needs only libdrm and threads; the tools use the rest.
FDNC_PACKAGES=(
  meson ninja-build g++ pkg-config
  libdrm-dev zlib1g-dev
  catch2 libbenchmark-dev libcli11-dev nlohmann-json3-dev
  python3
)

fdnc_missing_packages() {
  local missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  echo "${missing[@]:-}"
}

fdnc_install_packages() {
  local missing
  missing="$(fdnc_missing_packages "$@")"
  if [[ -z "${missing// /}" ]]; then
    return 0
  fi
  echo "fdnc: installing missing Debian packages: $missing"
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq --no-install-recommends $missing
}

fdnc_configure() {
  local builddir="$1"; shift
  if [[ ! -f "$builddir/build.ninja" ]]; then
    meson setup "$builddir" "$FDNC_ROOT" --wrap-mode=nodownload --buildtype=debugoptimized "$@"
  fi
}

fdnc_install_packages "${FDNC_PACKAGES[@]}"
fdnc_configure "$FDNC_BUILD"
