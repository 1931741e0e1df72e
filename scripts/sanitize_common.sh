#!/usr/bin/env bash
# Helpers shared by scripts/sanitize.sh, scripts/stress.sh and fuzz/run.sh (sourced): install the
# Debian packages a sanitizer/fuzz build needs, only the missing ones. scripts/setup.sh stays the
# plain build's list, so ordinary users never install clang.
fdnc_san_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "fdnc: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
