// IovaQuarantine: an iova freed by the client is not reused until the GPU can no longer touch it.
//
// A bo freed while submits that referenced it may still run is parked here with the fence points
// (ring, seqno) it must wait for; the range goes back to the IovaHeap only when every one of those
// rings has retired a seqno at or after its point. Handing an iova out again earlier would let a
// new bo alias memory an in-flight submit still reads or writes (the host never checks idleness
// before SET_IOVA(0), PROTOCOL.md U3).
//
// Each ring keeps a FIFO of waits ordered by seqno (parks arrive in increasing seqno order in
// practice, so insertion is at the back; an out-of-order park is inserted in order), so retire()
// costs O(waits it retires). Fence seqnos wrap: "a is at or before b" is the signed 32-bit
// difference a - b <= 0, as the kernel compares fences (PROTOCOL.md 2.9 WAIT_FENCE).
// Not thread-safe: the caller holds the same lock as for the heap.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "guest_alloc/iova_heap.h"

namespace fdnc {

struct FencePoint {
    uint32_t ring;
    uint32_t seqno;
};

enum class ParkStatus {
    Parked,          // waits for at least one fence point
    Released,        // every point had already retired (or none given): back in the heap now
    NotLive,        // iova is not a live allocation of the heap
    AlreadyParked,  // iova is already waiting here
    BadRing,        // ring >= kMaxRings
};
const char* what(ParkStatus status);

class IovaQuarantine {
public:
    // VIRTGPU_CONTEXT_PARAM_NUM_RINGS is at most 64 (PROTOCOL.md 3.4, G4).
    static constexpr uint32_t kMaxRings = 64;

    explicit IovaQuarantine(IovaHeap& heap) : heap_(heap) {}
    IovaQuarantine(const IovaQuarantine&) = delete;
    IovaQuarantine& operator=(const IovaQuarantine&) = delete;

    // `range` as IovaHeap::allocate returned it goes back through release(); a range with block 0
    // (alloc(), alloc_at()) through free(iova).
    ParkStatus park(IovaHeap::Allocation range, std::span<const FencePoint> points);
    ParkStatus park(uint64_t iova, std::span<const FencePoint> points) {
        return park(IovaHeap::Allocation{iova, 0}, points);
    }
    ParkStatus park(uint64_t iova, uint32_t ring, uint32_t seqno) {
        const FencePoint p{ring, seqno};
        return park(iova, std::span<const FencePoint>(&p, 1));
    }

    // Called for each range just before it goes back to the heap (not for rejected parks).
    using ReleaseHook = std::function<void(uint64_t iova, uint64_t bytes)>;
    void set_release_hook(ReleaseHook hook) { release_hook_ = std::move(hook); }

    // `ring` has retired everything up to and including `retired_seqno`. Returns the number of
    // ranges handed back to the heap.
    size_t retire(uint32_t ring, uint32_t retired_seqno);
    // Teardown: every parked range goes back to the heap. Returns how many.
    size_t release_all();

    bool is_parked(uint64_t iova) const { return by_iova_.count(iova) != 0; }
    size_t quarantined_ranges() const { return by_iova_.size(); }
    uint64_t quarantined_bytes() const { return bytes_; }


private:
    struct Entry {
        uint64_t iova;
        uint64_t bytes;
        uint32_t pending;  // fence points not yet retired; free-list link when unused
        uint32_t block;    // IovaHeap::Allocation::block, 0 for a range allocated by address
    };
    struct Wait {
        uint32_t seqno;
        uint32_t entry;
    };
    struct Ring {
        std::deque<Wait> waits;  // ordered by seqno (wrap-aware)
        std::optional<uint32_t> retired;
    };

    uint32_t new_entry(IovaHeap::Allocation range, uint64_t bytes);
    void release_entry(uint32_t e);

    IovaHeap& heap_;
    ReleaseHook release_hook_;
    std::array<Ring, kMaxRings> rings_;
    std::vector<Entry> entries_;
    std::vector<uint32_t> free_entries_;
    std::unordered_map<uint64_t, uint32_t> by_iova_;
    uint64_t bytes_ = 0;
};

}  // namespace fdnc
