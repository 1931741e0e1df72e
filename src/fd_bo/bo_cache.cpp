#include "fd_bo/bo_cache.h"

#include <algorithm>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"

namespace fdnc {

// Buckets as freedreno lays them out: 4, 8, 12, 16 KiB, then four per power of two (x, 1.25x,
// 1.5x, 1.75x) up to 64 MiB, so rounding up wastes at most 25%.
BoCache::BoCache() {
    for (uint64_t s : {4096u, 8192u, 12288u, 16384u}) buckets_.push_back({s, {}});
    for (uint64_t x = 32768; x <= (64u << 20); x *= 2) {
        for (uint64_t q : {4u, 5u, 6u, 7u}) {
            const uint64_t s = x * q / 4;
            if (s > buckets_.back().size) buckets_.push_back({s, {}});
        }
    }
}

BoCache::Bucket* BoCache::find(uint64_t size) {
    auto it = std::lower_bound(buckets_.begin(), buckets_.end(), size,
                               [](const Bucket& b, uint64_t s) { return b.size < s; });
    return it == buckets_.end() ? nullptr : &*it;
}

uint64_t BoCache::bucket_size(uint64_t size) const {
    auto it = std::lower_bound(buckets_.begin(), buckets_.end(), size,
                               [](const Bucket& b, uint64_t s) { return b.size < s; });
    return it == buckets_.end() ? 0 : it->size;
}

Bo* BoCache::take(Device& dev, uint64_t size, uint32_t flags) {
    std::lock_guard<std::mutex> g(lock_);
    Bucket* b = find(size);
    if (!b || b->size != size) {
        misses_++;
        return nullptr;
    }
    // Oldest first; a busy entry means the newer ones are busy too (Mesa's rule), except that
    // entries with other flags are skipped.
    for (auto it = b->bos.begin(); it != b->bos.end(); ++it) {
        Bo* bo = *it;
        if (bo->flags_ != flags) continue;
        if (!dev.fences_retired(bo->fences_snapshot())) break;
        b->bos.erase(it);
        bo->refcnt_.store(1, std::memory_order_release);
        hits_++;
        return bo;
    }
    misses_++;
    return nullptr;
}

bool BoCache::put(Bo* bo, int64_t now_ns) {
    std::lock_guard<std::mutex> g(lock_);
    Bucket* b = find(bo->alloc_size_);
    if (!b || b->size != bo->alloc_size_) return false;
    bo->cached_at_ns_ = now_ns;
    b->bos.push_back(bo);
    return true;
}

std::vector<Bo*> BoCache::evict(int64_t now_ns, int64_t max_age_ns) {
    std::vector<Bo*> out;
    std::lock_guard<std::mutex> g(lock_);
    if (max_age_ns >= 0) {
        // Time-based trimming runs at most every 100 ms: a put must stay cheap.
        if (now_ns - last_trim_ns_ < 100'000'000) return out;
        last_trim_ns_ = now_ns;
    }
    for (Bucket& b : buckets_) {
        while (!b.bos.empty() && (max_age_ns < 0 || now_ns - b.bos.front()->cached_at_ns_ > max_age_ns)) {
            out.push_back(b.bos.front());
            b.bos.pop_front();
        }
    }
    return out;
}

uint64_t BoCache::cached_bytes() {
    std::lock_guard<std::mutex> g(lock_);
    uint64_t n = 0;
    for (const Bucket& b : buckets_) n += b.size * b.bos.size();
    return n;
}

} // namespace fdnc
