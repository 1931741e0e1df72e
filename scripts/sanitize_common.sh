#!/usr/bin/env bash
# Helpers shared by scripts/sanitize.sh, scripts/stress.sh and fuzz/run.sh (sourced): install the
# Debian packages a sanitizer/fuzz build needs, only the missing ones. scripts/setup.sh stays the
# plain build's list, so ordinary users never install clang.
source "$(dirname "${BASH_SOURCE[0]}")/lib/packages.sh"
fdnc_san_install() { fdnc_install_packages "$@"; }
