// Wrapping 32-bit sequence numbers (msm fence seqnos, the shared page's seqno, the quarantine's
// per-ring fences): compared by their signed difference, as the kernel's fence_after() does
// (PROTOCOL.md §2.9), so the comparison stays right across the wrap at 2^32. The one copy every
// layer uses; header-only and dependency-free (src/util sits below every layer).
#pragma once

#include <cstdint>

namespace fdnc {

// `current` is at or past `target` (a fence `target` has retired once `current` was retired).
constexpr bool seqno_reached(uint32_t current, uint32_t target) {
    return static_cast<int32_t>(current - target) >= 0;
}

// `a` comes strictly after `b` (msm's fence_after()).
constexpr bool seqno_after(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

static_assert(seqno_reached(5, 5) && seqno_reached(0, 0xffffffffu) && !seqno_reached(0xffffffffu, 0));
static_assert(seqno_after(1, 0xffffffffu) && !seqno_after(7, 7));

} // namespace fdnc
