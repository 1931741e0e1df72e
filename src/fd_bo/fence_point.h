// Fence points as fd_bo uses them: FencePoint{ring, seqno} from guest_alloc, where `ring` is the
// pipe's slot (0..63, one per live pipe) and `seqno` the guest-chosen submit seqno (FENCE_SN_IN).
#pragma once

#include <cstdint>

#include "guest_alloc/iova_quarantine.h"

namespace fdnc {

// Pipes number their submits 1..INT32_MAX and wrap to 1 (PROTOCOL.md S4); compare with a signed
// difference so wrap-around keeps the order.
constexpr bool fence_passed(uint32_t retired, uint32_t fence) {
    return static_cast<int32_t>(retired - fence) >= 0;
}

inline constexpr uint32_t kMaxPipes = IovaQuarantine::kMaxRings;

} // namespace fdnc
