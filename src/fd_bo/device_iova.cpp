#include "fd_bo/device.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fd_bo/fd_bo_priv.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

using namespace fd_bo_priv;

// The quarantine's release hook, under lock_: clear the host mapping (SET_IOVA 0) now, so it is
// on the wire before any later reuse of the range, and close the guest handle after a flush.
void Device::release_iova(uint64_t iova) {
    auto it = parked_.find(iova);
    if (it == parked_.end()) return;
    const ParkedObject obj = it->second;
    parked_.erase(it);
    auto clear = ccmd::gem_set_iova(obj.res_id, 0);
    requests_->enqueue(clear.span());
    to_close_.push_back(obj.handle);
}

void Device::flush_released_locked() {
    if (to_close_.empty()) return;
    requests_->flush(); // Q8: the close must not overtake the ccmds that reference the resource
    for (uint32_t h : to_close_) transport_->close_blob(h);
    to_close_.clear();
}

void Device::release_range_locked(IovaHeap::Allocation range) {
    if (range.block != 0)
        heap_->release(range);
    else
        heap_->free(range.iova);
}

void Device::flush_released() {
    std::lock_guard<std::mutex> g(lock_);
    flush_released_locked();
}

// The retry ladder of alloc_iova: attempt 0 takes a free range; before attempt 1 idle cached bos
// and empty suballocation blocks give theirs back; from then on each attempt waits for in-flight
// submits so quarantined ranges retire, up to this many attempts.
constexpr int kAllocIovaMaxAttempts = 4;

// A range at `at` (replaying a capture's addresses) is allocated by address (block 0); any other
// through the heap's handle API, whose block the bo keeps for the release (no address lookup).
std::optional<IovaHeap::Allocation> Device::alloc_iova(uint64_t size, uint64_t align, int* err,
                                           std::optional<uint64_t> at) {
    for (int attempt = 0;; attempt++) {
        {
            std::lock_guard<std::mutex> g(lock_);
            if (attempt > 0) release_retired_locked();
            std::optional<IovaHeap::Allocation> range;
            if (!at) range = heap_->allocate(size, align);
            else if (heap_->alloc_at(*at, size)) range = IovaHeap::Allocation{*at, 0};
            if (range) {
                va_peak_ = std::max(va_peak_, heap_->live_bytes());
                flush_released_locked();
                return range;
            }
            flush_released_locked();
        }
        if (attempt == 0) {
            // Address-space pressure: idle cached bos and empty suballocation blocks give their
            // ranges back first.
            trim_cache();
            trim_heaps();
            continue;
        }
        if (attempt == 1) {
            std::lock_guard<std::mutex> g(lock_);
            if (quarantine_->quarantined_ranges() == 0) break;
        }
        if (attempt >= kAllocIovaMaxAttempts) break;
        // Ranges still wait for in-flight submits: that is a real wait on the host.
        bool waited = false, busy = false;
        for (FenceTimeline& tl : timelines_) {
            if (tl.idle()) continue;
            busy = true;
            bool blocked = false;
            if (tl.wait(*transport_, tl.last_submitted(), opts_.sync_timeout_ns, &blocked) == 0 && blocked)
                waited = true;
        }
        if (waited) waits_.count(HostWait::VaPressure);
        else if (!busy) break;
    }
    *err = at ? -ENOSPC : -ENOMEM;
    return std::nullopt;
}

void Device::trim_heaps() { suballoc_->trim(); }

void Device::trim_cache() {
    for (Bo* bo : cache_->evict(now_ns(), -1)) bo_destroy_backing(bo);
}

// Refcount reached zero.
void Device::bo_destroy(Bo* bo) {
    if (bo->client_) live_bos_.fetch_sub(1, std::memory_order_relaxed);
    bo->client_ = false;
    if (bo->block_) {
        suballoc_->free(bo);
        return;
    }
    if (opts_.bo_cache && !bo->imported_ && !bo->exported_ &&
        !(bo->flags_ & (kBoShared | kBoScanout | kBoNoCache)) && cache_->put(bo, now_ns())) {
        // Opportunistic time-based trim, as Mesa does on every put.
        for (Bo* old : cache_->evict(now_ns(), BoCache::kMaxAgeNs)) bo_destroy_backing(old);
        return;
    }
    bo_destroy_backing(bo);
}

// The host object and its iova go away once every submit that used them retired (D2/D3): until
// then the range is parked in the quarantine; the hook clears it on the host just before reuse.
void Device::bo_destroy_backing(Bo* bo) {
    if (void* m = bo->map_.exchange(nullptr)) transport_->unmap_blob(bo->handle_, m, bo->alloc_size_);
    std::vector<FencePoint> fences = bo->fences_snapshot();
    const bool guest_range = bo->iova_ != 0 && opts_.iova_mode == IovaMode::Guest;
    uint32_t res_id = bo->res_id_;
    if (guest_range && res_id == 0) {
        // Never resolved (vtest, never submitted): the later SET_IOVA(0) needs it. Resolving may
        // read a pipelined reply, so it happens before lock_ is taken, and a wait is counted.
        bool waited = false;
        transport_->resource_id(bo->handle_, &res_id, &waited);
        if (waited) waits_.count(HostWait::ResourceId);
    }
    std::lock_guard<std::mutex> g(lock_);
    handles_.erase(bo->handle_);
    if (!guest_range) {
        // No guest-owned range: the host frees the kernel-chosen iova with the object.
        to_close_.push_back(bo->handle_);
    } else {
        parked_[bo->iova_] = ParkedObject{bo->handle_, res_id};
        release_retired_locked();
        ParkStatus st = quarantine_->park(IovaHeap::Allocation{bo->iova_, bo->iova_block_}, fences);
        if (st != ParkStatus::Parked && st != ParkStatus::Released) {
            // Not the heap's range (cannot happen for bos made here); drop the host object anyway.
            parked_.erase(bo->iova_);
            to_close_.push_back(bo->handle_);
        }
    }
    flush_released_locked();
    delete bo;
}

} // namespace fdnc
