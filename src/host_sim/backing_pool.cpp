#include "host_sim/backing_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace fdnc::host {

BackingPool::~BackingPool() { clear(); }

void BackingPool::clear() {
    for (auto& [size, b] : spares_)
        release(b);
    spares_.clear();
    bytes_ = 0;
}

void BackingPool::release(const Backing& b) {
    if (b.map)
        munmap(b.map, b.size);
    if (b.memfd >= 0)
        close(b.memfd);
}

// Pages a memfd never had read as zero already; the ones it has are cleared (runs of resident
// pages, one memset each). mincore reads page tables only: no IPI, unlike dropping the pages.
void BackingPool::zero_resident(const Backing& b) {
    const long page = sysconf(_SC_PAGESIZE);
    const size_t pages = (b.size + page - 1) / page;
    std::vector<unsigned char> resident(pages);
    if (mincore(b.map, b.size, resident.data()) != 0) {
        std::memset(b.map, 0, b.size);
        return;
    }
    auto* base = static_cast<unsigned char*>(b.map);
    for (size_t i = 0; i < pages;) {
        if (!(resident[i] & 1)) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < pages && (resident[j] & 1))
            ++j;
        const size_t end = std::min<size_t>(j * page, b.size);
        std::memset(base + i * page, 0, end - i * page);
        i = j;
    }
}

std::optional<Backing> BackingPool::take(uint64_t size) {
    auto it = spares_.find(size);
    if (it == spares_.end())
        return std::nullopt;
    Backing b = it->second;
    spares_.erase(it);
    bytes_ -= size;
    zero_resident(b);
    return b;
}

void BackingPool::give(const Backing& b) {
    if (b.size > max_object_ || spares_.size() >= max_count_ || bytes_ + b.size > max_bytes_) {
        release(b);
        return;
    }
    spares_.emplace(b.size, b);
    bytes_ += b.size;
}

}  // namespace fdnc::host
