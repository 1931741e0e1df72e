#!/usr/bin/env bash
# Installing the Debian packages a script needs, only the missing ones (sourced by scripts/setup.sh,
# scripts/sanitize_common.sh and scripts/realhost/build-virglrenderer.sh). Messages go to stderr so
# a script's stdout can carry its result.

# Prints the packages of "$@" that are not installed, space separated.
fdnc_missing_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

# apt-get update once, then installs the missing ones; nothing at all when none is missing.
fdnc_install_packages() {
  local missing
  missing="$(fdnc_missing_packages "$@")"
  [[ -z "${missing// /}" ]] && return 0
  echo "fdnc: installing missing Debian packages: $missing" >&2
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq --no-install-recommends $missing >&2
}
