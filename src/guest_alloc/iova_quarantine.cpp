#include "guest_alloc/iova_quarantine.h"

#include "util/seqno.h"

#include <algorithm>

namespace fdnc {

const char* what(ParkStatus status) {
    switch (status) {
    case ParkStatus::Parked: return "parked until its fences retire";
    case ParkStatus::Released: return "all fences already retired; released to the heap";
    case ParkStatus::NotLive: return "iova is not a live heap allocation";
    case ParkStatus::AlreadyParked: return "iova is already quarantined";
    case ParkStatus::BadRing: return "ring index out of range (max 64 rings)";
    }
    return "unknown park status";
}

uint32_t IovaQuarantine::new_entry(IovaHeap::Allocation range, uint64_t bytes) {
    uint32_t e;
    if (!free_entries_.empty()) {
        e = free_entries_.back();
        free_entries_.pop_back();
    } else {
        e = static_cast<uint32_t>(entries_.size());
        entries_.push_back({});
    }
    entries_[e] = Entry{range.iova, bytes, 0, range.block};
    by_iova_.emplace(range.iova, e);
    bytes_ += bytes;
    return e;
}

void IovaQuarantine::release_entry(uint32_t e) {
    const Entry entry = entries_[e];
    by_iova_.erase(entry.iova);
    bytes_ -= entry.bytes;
    // The owner undoes the range's other uses (e.g. the host mapping) before anyone can reuse it.
    if (release_hook_) release_hook_(entry.iova, entry.bytes);
    if (entry.block != 0)
        heap_.release(IovaHeap::Allocation{entry.iova, entry.block});
    else
        heap_.free(entry.iova);
    free_entries_.push_back(e);
}

ParkStatus IovaQuarantine::park(IovaHeap::Allocation range, std::span<const FencePoint> points) {
    const uint64_t iova = range.iova;
    for (const FencePoint& p : points) {
        if (p.ring >= kMaxRings)
            return ParkStatus::BadRing;
    }
    if (by_iova_.count(iova) != 0)
        return ParkStatus::AlreadyParked;
    const uint64_t bytes = range.block != 0 ? heap_.allocation_size(range) : heap_.allocation_size(iova);
    if (bytes == 0)
        return ParkStatus::NotLive;

    const uint32_t e = new_entry(range, bytes);
    for (const FencePoint& p : points) {
        Ring& ring = rings_[p.ring];
        if (ring.retired && seqno_reached(*ring.retired, p.seqno))
            continue;  // that submit already finished
        ++entries_[e].pending;
        auto& waits = ring.waits;
        if (waits.empty() || seqno_reached(p.seqno, waits.back().seqno)) {
            waits.push_back({p.seqno, e});
        } else {
            // Out of order: keep the FIFO sorted so retire() stops at the first unretired wait.
            auto pos = std::upper_bound(waits.begin(), waits.end(), p.seqno,
                                        [](uint32_t s, const Wait& w) {
                                            return !seqno_reached(s, w.seqno);
                                        });
            waits.insert(pos, {p.seqno, e});
        }
    }
    if (entries_[e].pending == 0) {
        release_entry(e);
        return ParkStatus::Released;
    }
    return ParkStatus::Parked;
}

size_t IovaQuarantine::retire(uint32_t ring_idx, uint32_t retired_seqno) {
    if (ring_idx >= kMaxRings)
        return 0;
    Ring& ring = rings_[ring_idx];
    // A stale (older) retire report must not move the ring's retired point backwards.
    if (!ring.retired || seqno_reached(retired_seqno, *ring.retired))
        ring.retired = retired_seqno;
    size_t released = 0;
    while (!ring.waits.empty() && seqno_reached(*ring.retired, ring.waits.front().seqno)) {
        const uint32_t e = ring.waits.front().entry;
        ring.waits.pop_front();
        if (--entries_[e].pending == 0) {
            release_entry(e);
            ++released;
        }
    }
    return released;
}

size_t IovaQuarantine::release_all() {
    for (Ring& ring : rings_)
        ring.waits.clear();
    size_t released = 0;
    while (!by_iova_.empty()) {
        release_entry(by_iova_.begin()->second);
        ++released;
    }
    return released;
}

}  // namespace fdnc
