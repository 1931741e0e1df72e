// Fence points as fd_bo uses them: FencePoint{ring, seqno} from guest_alloc, where `ring` is the
// pipe's slot (0..63, one per live pipe) and `seqno` the guest-chosen submit seqno (FENCE_SN_IN).
#pragma once

#include <cstdint>

#include "guest_alloc/iova_quarantine.h"
#include "util/seqno.h"

namespace fdnc {

// Pipes number their submits 1..INT32_MAX and wrap to 1 (PROTOCOL.md S4); seqnos compare with
// util/seqno.h's seqno_reached so wrap-around keeps the order.

inline constexpr uint32_t kMaxPipes = IovaQuarantine::kMaxRings;

} // namespace fdnc
