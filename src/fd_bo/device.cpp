#include "fd_bo/device.h"

#include <fstream>
#include <thread>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fd_bo/fd_bo_priv.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

using namespace fd_bo_priv;

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

Device::Device(std::unique_ptr<Transport> transport, const DeviceOptions& opts)
    : opts_(opts), transport_(std::move(transport)), host_assigns_res_id_(transport_->info().host_assigns_res_id) {}

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
        release_retired_locked();
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
    release_retired_locked();
    flush_released_locked();
}

void Device::poll_fences() {
    for (FenceTimeline& tl : timelines_)
        if (!tl.idle()) tl.poll(*transport_);
}

void Device::release_retired_locked() {
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
    release_retired_locked(); // the pipe drained: its timeline is idle, its waiters go back to the heap
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
