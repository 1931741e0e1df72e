#include "fd_bo/device.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fd_bo/fd_bo_priv.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/fdnc_ext.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

using namespace fd_bo_priv;

namespace {

// One definition of a "bo_new wait", used by the stats, fdnc-replay and the C API: a bo_new
// (bo_new_at, bo_import) call during which this thread blocked on the host for any reason, as
// the transports and RequestBuffer note it after the fact (note_host_block). Counted when the
// call returns, so it cannot be counted before it happened or for another thread's wait.
class BoNewWaitProbe {
public:
    explicit BoNewWaitProbe(std::atomic<uint64_t>& count) : count_(count), before_(host_blocks_on_this_thread()) {}
    ~BoNewWaitProbe() {
        if (host_blocks_on_this_thread() != before_) count_.fetch_add(1, std::memory_order_relaxed);
    }
    BoNewWaitProbe(const BoNewWaitProbe&) = delete;
    BoNewWaitProbe& operator=(const BoNewWaitProbe&) = delete;

private:
    std::atomic<uint64_t>& count_;
    const uint64_t before_;
};

uint32_t msm_flags_for(uint32_t flags, bool has_cached_coherent) {
    uint32_t f = 0;
    if (flags & kBoScanout) f |= wire::MSM_BO_SCANOUT;
    if (flags & kBoGpuReadonly) f |= wire::MSM_BO_GPU_READONLY;
    // A2: exactly one cache mode; CACHED_COHERENT only when the host has it.
    f |= ((flags & kBoCachedCoherent) && has_cached_coherent) ? wire::MSM_BO_CACHED_COHERENT : wire::MSM_BO_WC;
    return f;
}

} // namespace

// The one epilogue of every bo a client receives (bo_new, bo_new_at, bo_import): its client-visible
// size (when it differs from the allocation's), and it counts in bos_live until bo_destroy.
Bo* Device::hand_out(Bo* bo, std::optional<uint64_t> size) {
    if (size) bo->size_ = *size;
    bo->client_ = true;
    live_bos_.fetch_add(1, std::memory_order_relaxed);
    return bo;
}

Bo* Device::bo_new(uint64_t size, uint32_t flags, const char* name, int* err) {
    BoNewWaitProbe probe(bo_new_waits_);
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (size == 0 || size > kMaxBoSize || (flags & ~kBoValidFlags)) {
        *err = -EINVAL;
        return nullptr;
    }
    if (status() != 0) {
        // A lost context cannot create buffers any more. The real wire cannot tell a host
        // out-of-memory from other async failures (§12.2), so every loss reads as -ENOMEM here,
        // which is what a GL driver reports for a failed allocation anyway.
        *err = -ENOMEM;
        return nullptr;
    }
    if (opts_.suballoc && opts_.iova_mode == IovaMode::Guest && BoHeap::eligible(size, flags)) {
        if (Bo* bo = suballoc_->alloc(size, name, err)) return hand_out(bo);
        if (*err != -ENOMEM) return nullptr;
        // fall through to a bo of its own
    }
    const bool cacheable = opts_.bo_cache && !(flags & (kBoShared | kBoScanout | kBoNoCache));
    uint64_t alloc_size = page_align(size);
    if (cacheable) {
        if (uint64_t b = cache_->bucket_size(size)) alloc_size = b;
        if (Bo* bo = cache_->take(*this, alloc_size, flags)) {
            // A hit keeps the host object and its iova: nothing goes to the host.
            if (name) bo->name_ = name;
            return hand_out(bo, size);
        }
    }
    Bo* bo = bo_new_backing(alloc_size, flags, name, err);
    return bo ? hand_out(bo, size) : nullptr;
}

Bo* Device::bo_new_at(uint64_t iova, uint64_t size, uint32_t flags, const char* name, int* err) {
    BoNewWaitProbe probe(bo_new_waits_);
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    const uint64_t alloc_size = page_align(size);
    if (opts_.iova_mode != IovaMode::Guest || size == 0 || size > kMaxBoSize ||
        (flags & ~kBoValidFlags) || (iova & (IovaHeap::kPageSize - 1)) || iova < va_range_start() ||
        iova - va_range_start() > va_range_size() || alloc_size > va_range_size() - (iova - va_range_start())) {
        *err = -EINVAL;
        return nullptr;
    }
    if (status() != 0) {
        *err = -ENOMEM; // a lost context, as in bo_new
        return nullptr;
    }
    // Never cached: a cached range would stay reserved and block the next bo wanted there.
    Bo* bo = bo_new_backing(alloc_size, flags | kBoNoCache, name, err, iova);
    return bo ? hand_out(bo, size) : nullptr;
}

Bo* Device::bo_new_backing(uint64_t alloc_size, uint32_t flags, const char* name, int* err,
                           std::optional<uint64_t> at) {
    alloc_size = page_align(alloc_size);
    const uint32_t msm_flags = msm_flags_for(flags, caps_.u.msm.has_cached_coherent == 1);
    uint64_t iova = 0;
    IovaHeap::Allocation range{};
    if (opts_.iova_mode == IovaMode::Guest) {
        auto r = alloc_iova(alloc_size, IovaHeap::kPageSize, err, at);
        if (!r) return nullptr;
        range = *r;
        iova = range.iova;
    }
    uint32_t blob_id = next_blob_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (blob_id == 0) blob_id = next_blob_id_.fetch_add(1, std::memory_order_relaxed) + 1; // B2: never 0

    // A6: GEM_NEW{iova, size, flags, blob_id} tunnelled in the blob create (Q4 flushes before it).
    auto req = ccmd::gem_new(iova, alloc_size, msm_flags, blob_id);
    BlobCreateArgs args;
    args.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    // Always MAPPABLE: the guest kernel rejects blob_flags 0 (§11.6) and vtest needs an fd (V8).
    args.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    if (flags & (kBoShared | kBoScanout)) args.blob_flags |= wire::VIRTGPU_BLOB_FLAG_USE_SHAREABLE;
    args.size = alloc_size;
    args.blob_id = blob_id;
    uint32_t handle = 0;
    int ret = requests_->create_blob(args, req.span(), &handle);
    if (ret < 0) {
        if (iova) {
            std::lock_guard<std::mutex> g(lock_);
            release_range_locked(range);
        }
        *err = ret;
        return nullptr;
    }
    Bo* bo = new Bo(this);
    bo->iova_ = iova;
    bo->iova_block_ = range.block;
    bo->size_ = alloc_size;
    bo->alloc_size_ = alloc_size;
    bo->flags_ = flags;
    bo->msm_flags_ = msm_flags;
    bo->handle_ = handle;
    if (name) bo->name_ = name;
    if (!host_assigns_res_id_) {
        transport_->resource_id(handle, &bo->res_id_);
        if (name && *name) bo->set_name(name);
    }
    if (opts_.iova_mode == IovaMode::Host) {
        ret = host_assign_iova(bo);
        if (ret < 0) {
            transport_->close_blob(handle);
            delete bo;
            *err = ret;
            return nullptr;
        }
    }
    {
        std::lock_guard<std::mutex> g(lock_);
        handles_[handle] = bo;
    }
    return bo;
}

// The old path, kept only as the baseline the design is measured against: the buffer was created
// without an iova and the guest now waits a full round trip for the host kernel's choice. The
// request is an fdnc-host-only extension (FDNC_CCMD_GEM_GET_IOVA): a real host refuses it (H4).
int Device::host_assign_iova(Bo* bo) {
    uint32_t res_id = 0;
    int ret = resolve_res_id(bo, &res_id);
    if (ret < 0) return ret;
    auto req = ccmd::fdnc_gem_get_iova(res_id);
    uint8_t rsp[ccmd::kFdncGemGetIovaRspSize] = {};
    const uint64_t blocks = host_blocks_on_this_thread();
    ret = requests_->send_sync(req.span(), rsp, opts_.sync_timeout_ns);
    if (host_blocks_on_this_thread() != blocks) waits_.count(HostWait::HostIova); // after, and only if it blocked
    if (ret < 0) return ret;
    int32_t host_ret = 0;
    uint64_t iova = 0;
    if (!ccmd::parse_fdnc_gem_get_iova(rsp, &host_ret, &iova)) return -EPROTO;
    if (host_ret != 0) return host_ret < 0 ? host_ret : -EIO;
    bo->iova_ = iova;
    return 0;
}

int Device::resolve_res_id(Bo* bo, uint32_t* res_id) {
    Bo* b = bo->backing();
    if (b->res_id_ == 0) {
        bool waited = false;
        int ret = transport_->resource_id(b->handle_, &b->res_id_, &waited);
        if (waited) waits_.count(HostWait::ResourceId);
        if (ret < 0) return ret;
        if (!b->name_.empty()) b->set_name(b->name_.c_str());
    }
    *res_id = b->res_id_;
    return 0;
}

Bo* Device::bo_import(int fd, int* err) {
    BoNewWaitProbe probe(bo_new_waits_);
    int dummy;
    if (!err) err = &dummy;
    if (status() != 0) {
        *err = -EIO;
        return nullptr;
    }
    uint32_t handle = 0;
    uint64_t size = 0;
    const uint64_t blocks = host_blocks_on_this_thread();
    int ret = transport_->import_blob_fd(fd, &handle, &size);
    if (host_blocks_on_this_thread() != blocks) waits_.count(HostWait::Share);
    if (ret < 0) {
        *err = ret;
        return nullptr;
    }
    {
        // I1: the same resource imported again is the same bo.
        std::lock_guard<std::mutex> g(lock_);
        auto it = handles_.find(handle);
        if (it != handles_.end()) {
            Bo* bo = it->second;
            if (bo->refcnt_.fetch_add(1, std::memory_order_acq_rel) == 0) {
                // It was on its way into the cache (refcount 0 while parked): not shareable then.
                bo->refcnt_.fetch_sub(1);
            } else {
                return bo;
            }
        }
    }
    if (size == 0 || size > kMaxBoSize) {
        *err = -EINVAL;
        return nullptr;
    }
    size = page_align(size);
    auto range = alloc_iova(size, IovaHeap::kPageSize, err);
    if (!range) return nullptr;
    const std::optional<uint64_t> iova = range->iova;
    Bo* bo = new Bo(this);
    bo->iova_ = *iova;
    bo->iova_block_ = range->block;
    bo->size_ = size;
    bo->alloc_size_ = size;
    bo->flags_ = kBoShared | kBoNoCache;
    bo->handle_ = handle;
    bo->imported_ = true;
    ret = resolve_res_id(bo, &bo->res_id_);
    if (ret == 0) {
        // I3: map it at a guest-chosen iova; queued, the next submit flushes it ahead of itself.
        auto req = ccmd::gem_set_iova(bo->res_id_, *iova);
        if (!requests_->enqueue(req.span(), 0, &ret)) ret = ret ? ret : -EIO;
        else ret = 0;
    }
    if (ret < 0) {
        std::lock_guard<std::mutex> g(lock_);
        release_range_locked(*range);
        delete bo;
        *err = ret;
        return nullptr;
    }
    {
        std::lock_guard<std::mutex> g(lock_);
        handles_[handle] = bo;
    }
    return hand_out(bo);
}

} // namespace fdnc
