#!/usr/bin/env bash
# Quick start 1/2: install what is missing, build, and run the main job (fdnc-replay on its
# built-in synthetic workload, guest- vs host-chosen iovas side by side). Extra args go to fdnc-replay.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ninja -C "$FDNC_BUILD"
exec "$FDNC_BUILD/tools/fdnc-replay/fdnc-replay" "$@"
