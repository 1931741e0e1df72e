#!/usr/bin/env bash
# Quick start 1/2: install what is missing, build, and run the main job (fdnc-replay on its
# built-in synthetic workload, guest- vs host-chosen iovas side by side). Extra args go to fdnc-replay.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ninja -C "$FDNC_BUILD"
if [[ -x "$FDNC_BUILD/tools/fdnc-replay/fdnc-replay" ]]; then
  exec "$FDNC_BUILD/tools/fdnc-replay/fdnc-replay" "$@"
else
  # Until the replay tool lands: the smallest honest end-to-end run through the in-process transport.
  exec "$FDNC_BUILD/tests/proto/fdnc-smoke" "$@"
fi
