// The round trip a host-mode bo_new cannot avoid, measured rather than assumed: N synchronous NOP
// requests on a fresh, otherwise idle context. On the in-process host it shows how close the
// delay line keeps a round trip to the injected one (nothing queued ahead, no host work); beside
// host-mode bo_new it separates the round trip itself from the work queued ahead of a GEM_NEW in
// a busy stream. Over vtest or virtgpu it is the real transport's round trip.
#pragma once

#include <string>

#include "replay/replayer.h"

namespace fdnc::replay {

// Opens a device with `open`, times `calls` NOP send_syncs one after another (the first, which
// may pay set-up, is not counted) and closes it again. count == 0 and *error set on failure.
LatencySummary probe_round_trip(const DeviceFactory& open, unsigned calls, std::string* error);

} // namespace fdnc::replay
