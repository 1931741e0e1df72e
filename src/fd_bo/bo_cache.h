// BoCache: freed bos parked by size bucket for reuse (Mesa's freedreno_bo_cache). A hit hands the
// same host object back with the same iova, so it sends nothing to the host at all. Entries are
// reused only once idle (every submit that used them retired) and trimmed after kMaxAge, or all
// at once when the address space runs short.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace fdnc {

class Bo;
class Device;

class BoCache {
public:
    static constexpr int64_t kMaxAgeNs = 1'000'000'000; // Mesa trims entries older than 1 s

    BoCache();
    // The size a request is rounded up to (its bucket), or 0 when no bucket holds it.
    uint64_t bucket_size(uint64_t size) const;
    // An idle cached bo of exactly this bucket and flags, or nullptr.
    Bo* take(Device& dev, uint64_t size, uint32_t flags);
    // Parks bo (refcount 0); false when it does not belong in the cache.
    bool put(Bo* bo, int64_t now_ns);
    // Entries older than max_age_ns (all with max_age_ns < 0); the caller destroys them.
    std::vector<Bo*> evict(int64_t now_ns, int64_t max_age_ns);

    uint64_t hits() const { return hits_; }
    uint64_t misses() const { return misses_; }
    uint64_t cached_bytes();

private:
    struct Bucket {
        uint64_t size;
        std::deque<Bo*> bos; // oldest first: the front is the most likely idle
    };
    Bucket* find(uint64_t size);

    std::mutex lock_;
    std::vector<Bucket> buckets_;
    uint64_t hits_ = 0;
    uint64_t misses_ = 0;
    int64_t last_trim_ns_ = 0;
};

} // namespace fdnc
