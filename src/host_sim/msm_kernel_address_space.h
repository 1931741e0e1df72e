// MsmKernel::AddressSpace: one GPU address space of the msm kernel model, the drm_mm of a file's
// (or the global) VM: exact ranges, one per vma, best-fit insertion and the kernel's error codes
// (PROTOCOL.md §1.2). With msm_kernel_address_space.cpp (vmas, faults) it is the project's
// iova-safety oracle, readable on its own. Private to src/host_sim/msm_kernel*.cpp.
#pragma once

#include <cerrno>
#include <cstdint>
#include <map>
#include <utility>

#include "host_sim/msm_kernel.h"

namespace fdnc::host {

namespace kernel_detail {
inline constexpr uint64_t kPageSize = 4096;
inline uint64_t page_align(uint64_t v) { return (v + kPageSize - 1) & ~(kPageSize - 1); }
} // namespace kernel_detail

// A drm_mm over [start, start + size) holding exact ranges (one per vma).
struct MsmKernel::AddressSpace {
    uint64_t start = 0;
    uint64_t size = 0;
    std::map<uint64_t, std::pair<uint64_t, uint64_t>> ranges; // iova -> (end, object id)

    uint64_t end() const { return start + size; }

    // drm_mm_insert_node_in_range(size, PAGE_SIZE alignment, [rs, re), best fit): the smallest
    // hole that fits, lowest address on ties; -ENOSPC when nothing fits (§1.2 #7).
    int insert(uint64_t len, uint64_t rs, uint64_t re, uint64_t object_id, uint64_t* out) {
        if (len == 0 || rs >= re)
            return -ENOSPC;
        if (re - rs == len) { // SET_IOVA: exactly one candidate, O(log n)
            if (rs % kernel_detail::kPageSize || rs < start || re > end() || overlaps(rs, re))
                return -ENOSPC;
            ranges[rs] = {re, object_id};
            *out = rs;
            return 0;
        }
        rs = std::max(rs, start);
        re = std::min(re, end());
        if (rs >= re)
            return -ENOSPC;
        uint64_t best = 0, best_hole = UINT64_MAX;
        bool found = false;
        uint64_t cursor = start;
        auto consider = [&](uint64_t hole_start, uint64_t hole_end) {
            uint64_t b = kernel_detail::page_align(std::max(hole_start, rs));
            uint64_t e = std::min(hole_end, re);
            if (b < e && e - b >= len && hole_end - hole_start < best_hole) {
                best = b;
                best_hole = hole_end - hole_start;
                found = true;
            }
        };
        for (auto& [s, v] : ranges) {
            if (s > cursor)
                consider(cursor, s);
            cursor = std::max(cursor, v.first);
        }
        if (cursor < end())
            consider(cursor, end());
        if (!found)
            return -ENOSPC;
        ranges[best] = {best + len, object_id};
        *out = best;
        return 0;
    }
    bool overlaps(uint64_t b, uint64_t e) const {
        auto it = ranges.lower_bound(e);
        if (it == ranges.begin())
            return false;
        --it;
        return it->second.first > b;
    }
    void release(uint64_t iova) { ranges.erase(iova); }
};

} // namespace fdnc::host
