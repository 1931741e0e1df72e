#!/usr/bin/env bash
# Quick start 2/2: install what is missing, build, and run every test suite (`meson test`).
# Extra args go to meson test, e.g. `scripts/test.sh --suite proto`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ninja -C "$FDNC_BUILD"
meson test -C "$FDNC_BUILD" --print-errorlogs "$@"
