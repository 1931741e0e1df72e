// BackingPool: memory of freed GEM objects (a memfd and its mapping), kept for the next object of
// the same size instead of being unmapped.
//
// Why: unmapping a mapping whose pages were touched is a TLB shootdown, an IPI to every CPU the
// process runs on. When the model host runs inside the guest client's process (inproc:), those
// IPIs land on the client's thread in the middle of its bo_new: they were the largest part of the
// in-process bo_new tail (bench/README.md, "bo_new tail"). A kept backing is zeroed when it is
// taken again, only where it has pages (mincore): a GEM object's memory reads as zero when new,
// and pages never touched already do.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

namespace fdnc::host {

struct Backing {
    int memfd = -1;
    void* map = nullptr;
    uint64_t size = 0;
    dev_t dev = 0;
    ino_t ino = 0;
};

class BackingPool {
public:
    // Keeps at most `max_count` backings of at most `max_object` bytes each, `max_bytes` in all.
    BackingPool(size_t max_count, uint64_t max_object, uint64_t max_bytes)
        : max_count_(max_count), max_object_(max_object), max_bytes_(max_bytes) {}
    ~BackingPool();
    BackingPool(const BackingPool&) = delete;
    BackingPool& operator=(const BackingPool&) = delete;

    // A kept backing of exactly `size` bytes, zeroed; nullopt if there is none.
    std::optional<Backing> take(uint64_t size);
    // Keeps `b` (the caller no longer owns it) or, past the limits, unmaps and closes it.
    void give(const Backing& b);
    // Unmaps and closes every kept backing.
    void clear();
    // Unmaps and closes one backing.
    static void release(const Backing& b);

    size_t count() const { return spares_.size(); }
    uint64_t bytes() const { return bytes_; }

private:
    static void zero_resident(const Backing& b);

    size_t max_count_;
    uint64_t max_object_;
    uint64_t max_bytes_;
    uint64_t bytes_ = 0;
    std::multimap<uint64_t, Backing> spares_;  // by size
};

}  // namespace fdnc::host
