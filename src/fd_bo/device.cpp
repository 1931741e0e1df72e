#include "fd_bo/device.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "fd_bo/bo.h"
#include "fd_bo/bo_cache.h"
#include "fd_bo/bo_heap.h"
#include "fd_bo/pipe.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/fdnc_ext.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

const char* host_wait_name(HostWait w) {
    switch (w) {
    case HostWait::SyncRequest: return "sync_request";
    case HostWait::PipeWait: return "pipe_wait";
    case HostWait::CpuPrep: return "cpu_prep";
    case HostWait::MapSync: return "map_sync";
    case HostWait::ResourceId: return "resource_id";
    case HostWait::VaPressure: return "va_pressure";
    case HostWait::HostIova: return "host_iova";
    case HostWait::Map: return "map";
    case HostWait::Share: return "share";
    case HostWait::Teardown: return "teardown";
    case HostWait::Count: break;
    }
    return "?";
}

namespace {

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

uint64_t page_align(uint64_t size) { return (size + 4095) & ~uint64_t{4095}; }

uint32_t load_shmem_u32(const void* shmem, size_t off) {
    return __atomic_load_n(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(shmem) + off),
                           __ATOMIC_ACQUIRE);
}

} // namespace

Device::Device(std::unique_ptr<Transport> transport, const DeviceOptions& opts)
    : opts_(opts), transport_(std::move(transport)) {}

std::unique_ptr<Device> Device::open(std::unique_ptr<Transport> transport, const DeviceOptions& opts,
                                     std::string* error) {
    if (!transport) {
        if (error) *error = "no transport";
        return nullptr;
    }
    std::unique_ptr<Device> dev(new Device(std::move(transport), opts));
    std::string err;
    if (dev->init(&err) != 0) {
        if (error) *error = err;
        return nullptr;
    }
    return dev;
}

// Capset checks as Mesa's guest does them (PROTOCOL.md §4.5), each with its own reason, then
// context init (G4), the shared page (G5) and the heap over the capset's VA range (G9).
int Device::init(std::string* error) {
    uint8_t buf[sizeof(wire::virgl_renderer_capset_drm)] = {};
    int ret = transport_->get_capset(wire::VIRTGPU_CAPSET_DRM, 0, buf);
    if (ret < 0) {
        *error = std::string("host offers no DRM native-context capset (") + std::strerror(-ret) + ")";
        return ret;
    }
    std::memcpy(&caps_, buf, sizeof(caps_));
    if (caps_.context_type != wire::VIRTGPU_DRM_CONTEXT_MSM) {
        *error = "wrong context_type " + std::to_string(caps_.context_type) + " (want 1, msm)";
        return -EINVAL;
    }
    if (caps_.wire_format_version != wire::kDrmCapsetWireFormatVersion) {
        *error = "unsupported protocol version: wire_format_version " +
                 std::to_string(caps_.wire_format_version) + " (want 2)";
        return -EINVAL;
    }
    // FENCE_SN_IN needs msm uabi 1.9 (§2.11); the real host refuses older kernels too.
    if (caps_.version_major != 1 || caps_.version_minor < 9) {
        *error = "unsupported msm version " + std::to_string(caps_.version_major) + "." +
                 std::to_string(caps_.version_minor) + " (want 1.9 or later)";
        return -EINVAL;
    }
    if (caps_.u.msm.va_size == 0) {
        *error = "no address space: host reports va_size 0 (kernel without MSM_PARAM_VA_SIZE)";
        return -EINVAL;
    }
    if (caps_.u.msm.gpu_id == 0 && caps_.u.msm.chip_id == 0) {
        *error = "host reports neither gpu_id nor chip_id";
        return -EINVAL;
    }
    // The old path asks the host for each iova with fdnc's extension ccmd; a host that does not
    // say it serves it would drop the context (vtest) or never answer (virtio-gpu).
    if (opts_.iova_mode == IovaMode::Host && !host_has_fdnc_extensions()) {
        *error = "host-chosen iovas need fdnc's extension ccmd FDNC_CCMD_GEM_GET_IOVA, which this host does "
                 "not offer (only fdnc-hostsim and inproc: do; virglrenderer never)";
        return -EOPNOTSUPP;
    }
    priorities_ = std::max<uint32_t>(caps_.u.msm.priorities, 1);
    const uint32_t num_rings = std::min<uint32_t>(priorities_ + 1, wire::kVirtgpuMaxRings);
    ret = transport_->context_init(wire::VIRTGPU_CAPSET_DRM, num_rings);
    if (ret < 0) {
        *error = std::string("context init failed: ") + std::strerror(-ret);
        return ret;
    }

    BlobCreateArgs shm;
    shm.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    shm.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE; // exactly MAPPABLE (§5.3)
    shm.size = wire::kShmemSize;
    shm.blob_id = wire::kShmemBlobId;
    ret = transport_->create_blob(shm, &shmem_handle_);
    if (ret == 0) ret = transport_->map_blob(shmem_handle_, wire::kShmemSize, &shmem_);
    if (ret < 0) {
        *error = std::string("shared page: ") + std::strerror(-ret);
        return ret;
    }
    requests_ = std::make_unique<RequestBuffer>(*transport_, shmem_, wire::kShmemSize);

    heap_ = std::make_unique<IovaHeap>(va_range_start(), va_range_size());
    quarantine_ = std::make_unique<IovaQuarantine>(*heap_);
    // Called under lock_ for each range whose submits all retired, before it returns to the heap:
    // the host mapping is cleared first, so a later GEM_NEW reusing the range reaches the host
    // after the clear (one FIFO stream: D4).
    quarantine_->set_release_hook([this](uint64_t iova, uint64_t) { release_iova(iova); });
    cache_ = std::make_unique<BoCache>();
    suballoc_ = std::make_unique<BoHeap>(*this, 0);

    // G8: tell the host who we are; queued, never waited for.
    std::string comm = opts_.debug_name;
    std::string cmdline = comm;
    {
        std::ifstream f("/proc/self/comm");
        std::string s;
        if (f && std::getline(f, s) && !s.empty()) comm = s;
    }
    auto dbg = ccmd::set_debuginfo(std::string_view(comm.c_str(), comm.size() + 1),
                                   std::string_view(cmdline.c_str(), cmdline.size() + 1));
    requests_->enqueue(dbg.span());
    return 0;
}

Device::~Device() {
    if (!requests_) return; // init failed before the context existed
    // Pipes the client leaked: drain and drop them (each waits for its own submits).
    for (uint32_t slot = 0; slot < kMaxPipes; slot++) {
        Pipe* p;
        {
            std::lock_guard<std::mutex> g(lock_);
            p = pipes_[slot];
        }
        delete p; // ~Pipe drains it and calls pipe_destroyed(), which clears the slot
    }
    for (Bo* bo : cache_->evict(0, -1)) bo_destroy_backing(bo);
    suballoc_->release_all();
    {
        std::lock_guard<std::mutex> g(lock_);
        retire_locked();
        quarantine_->release_all();
    }
    flush_released();
    requests_->flush();
    // Guest handles still held by the client are its leak; the transport drops them with the context.
    requests_.reset();
    if (shmem_) transport_->unmap_blob(shmem_handle_, shmem_, wire::kShmemSize);
    transport_->close_blob(shmem_handle_);
}

uint32_t Device::check_async_error() {
    const uint32_t off = load_shmem_u32(shmem_, offsetof(wire::vdrm_shmem, rsp_mem_offset));
    if (!wire::shmem_has_field(off, offsetof(wire::msm_shmem, async_error))) return 0;
    const uint32_t v = load_shmem_u32(shmem_, offsetof(wire::msm_shmem, async_error));
    if (v != 0 && !lost_.load(std::memory_order_relaxed)) lost_.store(true, std::memory_order_release);
    seen_async_error_.store(v, std::memory_order_relaxed);
    return v;
}

int Device::status() {
    check_async_error();
    // Requests dropped by a failed flush (host gone, stream cut mid-message) lose the context too.
    if (requests_ && requests_->broken() && !lost_.load(std::memory_order_relaxed))
        lost_.store(true, std::memory_order_release);
    return lost_.load(std::memory_order_acquire) ? -EIO : 0;
}

bool Device::fences_retired(const std::vector<FencePoint>& fences) {
    for (const FencePoint& f : fences) {
        if (f.ring < kMaxPipes && !timelines_[f.ring].is_retired(f.seqno)) return false;
    }
    return true;
}

void Device::retire() {
    std::lock_guard<std::mutex> g(lock_);
    retire_locked();
    flush_released_locked();
}

void Device::retire_pipes() {
    for (FenceTimeline& tl : timelines_)
        if (!tl.idle()) tl.poll(*transport_);
}

void Device::retire_locked() {
    for (uint32_t slot = 0; slot < kMaxPipes; slot++) {
        FenceTimeline& tl = timelines_[slot];
        if (tl.last_submitted() == 0) continue;
        const uint32_t r = tl.idle() ? tl.retired() : tl.poll(*transport_);
        if (r != 0 && r != retired_seen_[slot]) {
            retired_seen_[slot] = r;
            quarantine_->retire(slot, r);
        }
    }
}

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

void Device::flush_released() {
    std::lock_guard<std::mutex> g(lock_);
    flush_released_locked();
}

std::optional<uint64_t> Device::alloc_iova(uint64_t size, uint64_t align, int* err,
                                           std::optional<uint64_t> at) {
    for (int attempt = 0;; attempt++) {
        {
            std::lock_guard<std::mutex> g(lock_);
            if (attempt > 0) retire_locked();
            std::optional<uint64_t> iova;
            if (!at) iova = heap_->alloc(size, align);
            else if (heap_->alloc_at(*at, size)) iova = at;
            if (iova) {
                va_peak_ = std::max(va_peak_, heap_->stats().live_bytes);
                flush_released_locked();
                return iova;
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
        if (attempt >= 4) break;
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

static uint32_t msm_flags_for(uint32_t flags, bool has_cached_coherent) {
    uint32_t f = 0;
    if (flags & kBoScanout) f |= wire::MSM_BO_SCANOUT;
    if (flags & kBoGpuReadonly) f |= wire::MSM_BO_GPU_READONLY;
    // A2: exactly one cache mode; CACHED_COHERENT only when the host has it.
    f |= ((flags & kBoCachedCoherent) && has_cached_coherent) ? wire::MSM_BO_CACHED_COHERENT : wire::MSM_BO_WC;
    return f;
}

Bo* Device::bo_new(uint64_t size, uint32_t flags, const char* name, int* err) {
    BoNewWaitProbe probe(bo_new_waits_);
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (size == 0 || size > (uint64_t{1} << 40) || (flags & ~kBoValidFlags)) {
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
        if (Bo* bo = suballoc_->alloc(size, name, err)) {
            bo->client_ = true;
            live_bos_.fetch_add(1, std::memory_order_relaxed);
            return bo;
        }
        if (*err != -ENOMEM) return nullptr;
        // fall through to a bo of its own
    }
    const bool cacheable = opts_.bo_cache && !(flags & (kBoShared | kBoScanout | kBoNoCache));
    uint64_t alloc_size = page_align(size);
    if (cacheable) {
        if (uint64_t b = cache_->bucket_size(size)) alloc_size = b;
        if (Bo* bo = cache_->take(*this, alloc_size, flags)) {
            // A hit keeps the host object and its iova: nothing goes to the host.
            bo->size_ = size;
            if (name) bo->name_ = name;
            bo->client_ = true;
            live_bos_.fetch_add(1, std::memory_order_relaxed);
            return bo;
        }
    }
    Bo* bo = bo_new_backing(alloc_size, flags, name, err);
    if (bo) {
        bo->size_ = size;
        bo->client_ = true;
        live_bos_.fetch_add(1, std::memory_order_relaxed);
    }
    return bo;
}

Bo* Device::bo_new_at(uint64_t iova, uint64_t size, uint32_t flags, const char* name, int* err) {
    BoNewWaitProbe probe(bo_new_waits_);
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    const uint64_t alloc_size = page_align(size);
    if (opts_.iova_mode != IovaMode::Guest || size == 0 || size > (uint64_t{1} << 40) ||
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
    if (bo) {
        bo->size_ = size;
        bo->client_ = true;
        live_bos_.fetch_add(1, std::memory_order_relaxed);
    }
    return bo;
}

Bo* Device::bo_new_backing(uint64_t alloc_size, uint32_t flags, const char* name, int* err,
                           std::optional<uint64_t> at) {
    alloc_size = page_align(alloc_size);
    const uint32_t msm_flags = msm_flags_for(flags, caps_.u.msm.has_cached_coherent == 1);
    uint64_t iova = 0;
    if (opts_.iova_mode == IovaMode::Guest) {
        auto r = alloc_iova(alloc_size, IovaHeap::kPageSize, err, at);
        if (!r) return nullptr;
        iova = *r;
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
            heap_->free(iova);
        }
        *err = ret;
        return nullptr;
    }
    Bo* bo = new Bo(this);
    bo->iova_ = iova;
    bo->size_ = alloc_size;
    bo->alloc_size_ = alloc_size;
    bo->flags_ = flags;
    bo->msm_flags_ = msm_flags;
    bo->handle_ = handle;
    if (name) bo->name_ = name;
    if (!transport_->info().host_assigns_res_id) {
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
    if (size == 0 || size > (uint64_t{1} << 40)) {
        *err = -EINVAL;
        return nullptr;
    }
    size = page_align(size);
    auto iova = alloc_iova(size, IovaHeap::kPageSize, err);
    if (!iova) return nullptr;
    Bo* bo = new Bo(this);
    bo->iova_ = *iova;
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
        heap_->free(*iova);
        delete bo;
        *err = ret;
        return nullptr;
    }
    {
        std::lock_guard<std::mutex> g(lock_);
        handles_[handle] = bo;
    }
    bo->client_ = true;
    live_bos_.fetch_add(1, std::memory_order_relaxed);
    return bo;
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
        retire_locked();
        ParkStatus st = quarantine_->park(bo->iova_, fences);
        if (st != ParkStatus::parked && st != ParkStatus::released) {
            // Not the heap's range (cannot happen for bos made here); drop the host object anyway.
            parked_.erase(bo->iova_);
            to_close_.push_back(bo->handle_);
        }
    }
    flush_released_locked();
    delete bo;
}

Pipe* Device::pipe_new(uint32_t prio, int* err) {
    int dummy;
    if (!err) err = &dummy;
    if (status() != 0) {
        *err = -EIO;
        return nullptr;
    }
    prio = std::min(prio, priorities_ - 1); // P1
    uint32_t slot = kMaxPipes;
    {
        std::lock_guard<std::mutex> g(lock_);
        for (uint32_t s = 0; s < kMaxPipes; s++)
            if (!pipes_[s] && !slot_busy_[s]) {
                slot = s;
                slot_busy_[s] = true;
                break;
            }
    }
    if (slot == kMaxPipes) {
        *err = -EBUSY;
        return nullptr;
    }
    auto req = ccmd::submitqueue_new(0, prio);
    uint8_t rsp[ccmd::kSubmitqueueNewRspSize] = {};
    const uint64_t blocks = host_blocks_on_this_thread();
    int ret = requests_->send_sync(req.span(), rsp, opts_.sync_timeout_ns);
    if (host_blocks_on_this_thread() != blocks) waits_.count(HostWait::SyncRequest);
    int32_t host_ret = -1;
    uint32_t queue_id = 0;
    if (ret == 0 && (!ccmd::parse_submitqueue_new(rsp, &host_ret, &queue_id) || host_ret != 0))
        ret = -EINVAL; // IOCTL_SIMPLE carries only 0/-1 (P4)
    std::lock_guard<std::mutex> g(lock_);
    slot_busy_[slot] = false;
    if (ret < 0) {
        *err = ret;
        return nullptr;
    }
    Pipe* p = new Pipe(this, queue_id, prio, slot, timelines_[slot]);
    pipes_[slot] = p;
    return p;
}

// Called by ~Pipe after it drained its submits.
void Device::pipe_destroyed(Pipe* pipe) {
    auto req = ccmd::submitqueue_close(pipe->id());
    std::lock_guard<std::mutex> g(lock_);
    const uint32_t slot = pipe->slot();
    retire_locked(); // the pipe drained: its timeline is idle, its waiters go back to the heap
    pipes_[slot] = nullptr;
    // IOCTL_SIMPLE always has a response slot; nobody waits for this one.
    requests_->enqueue(req.span(), req.rsp_size);
    flush_released_locked();
}

DeviceStats Device::stats() {
    DeviceStats s;
    check_async_error();
    s.host_waits = waits_.total();
    s.bo_new_waits = bo_new_waits_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < static_cast<size_t>(HostWait::Count); i++)
        s.host_waits_by_reason[i] = waits_.get(static_cast<HostWait>(i));
    const uint32_t off = load_shmem_u32(shmem_, offsetof(wire::vdrm_shmem, rsp_mem_offset));
    if (wire::shmem_has_field(off, offsetof(wire::msm_shmem, global_faults)))
        s.faults = load_shmem_u32(shmem_, offsetof(wire::msm_shmem, global_faults));
    s.async_errors = seen_async_error_.load(std::memory_order_relaxed);
    RequestStats rs = requests_->stats();
    s.ccmds = rs.ccmds;
    s.batches = rs.batches;
    s.bytes_sent = rs.bytes;
    s.bos_live = live_bos_.load(std::memory_order_relaxed);
    s.bo_cache_hits = cache_->hits();
    s.bo_cache_misses = cache_->misses();
    s.suballocs = suballoc_->suballocs();
    s.submits = submits_.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(lock_);
    IovaHeap::Stats hs = heap_->stats();
    s.va_live_bytes = hs.live_bytes - quarantine_->quarantined_bytes();
    s.va_quarantined_bytes = quarantine_->quarantined_bytes();
    s.va_peak_bytes = hs.peak_live_bytes;
    s.va_largest_free_bytes = hs.largest_free;
    s.va_free_bytes = hs.free_bytes;
    s.context_lost = lost_.load(std::memory_order_relaxed);
    return s;
}

IovaHeap::Stats Device::heap_stats() {
    std::lock_guard<std::mutex> g(lock_);
    return heap_->stats();
}

size_t Device::quarantined_ranges() {
    std::lock_guard<std::mutex> g(lock_);
    return quarantine_->quarantined_ranges();
}

} // namespace fdnc
