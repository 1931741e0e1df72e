// Device: one native context (Mesa's fd_device + virtio_device). Owns the transport, the shared
// page, the request buffer, the guest iova heap with its quarantine, the bo cache and the
// suballocation heaps. Everything a driver calls is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fd_bo/fence_point.h"
#include "fd_bo/host_waits.h"
#include "fd_bo/pipe.h"
#include "guest_alloc/iova_heap.h"
#include "guest_alloc/iova_quarantine.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/fdnc_ext_wire.h"
#include "virtio_proto/request_buffer.h"
#include "virtio_proto/transport.h"

namespace fdnc {

class Bo;
class BoCache;
class BoHeap;
class Pipe;

// Where a new buffer's GPU address comes from.
enum class IovaMode {
    Guest, // the design: the guest heap picks it, GEM_NEW carries it, nothing waits
    Host,  // the old path, kept as a baseline: the guest waits one round trip for the host's choice
};

struct DeviceOptions {
    bool bo_cache = true;
    bool suballoc = true;
    IovaMode iova_mode = IovaMode::Guest;
    std::string debug_name = "fdnc";
    int64_t sync_timeout_ns = 5'000'000'000; // bound on every wait the device does on its own
};

struct DeviceStats {
    uint64_t host_waits = 0;
    // bo_new / bo_new_at / bo_import calls that blocked on the host for any reason (the design
    // keeps this 0 in guest mode); the one definition fdnc-replay and the C API report.
    uint64_t bo_new_waits = 0;
    uint64_t host_waits_by_reason[static_cast<size_t>(HostWait::Count)] = {};
    uint64_t faults = 0;
    uint64_t async_errors = 0;
    uint64_t ccmds = 0;
    uint64_t batches = 0;
    uint64_t bytes_sent = 0;
    uint64_t bos_live = 0;
    uint64_t bo_cache_hits = 0;
    uint64_t bo_cache_misses = 0;
    uint64_t suballocs = 0;
    uint64_t submits = 0;
    uint64_t va_live_bytes = 0;
    uint64_t va_quarantined_bytes = 0;
    uint64_t va_peak_bytes = 0;
    uint64_t va_largest_free_bytes = 0;
    uint64_t va_free_bytes = 0;
    bool context_lost = false;
};

class Device {
public:
    // Reads and checks the capset, creates the context and its shared page. On failure returns
    // nullptr with a named reason in *error.
    static std::unique_ptr<Device> open(std::unique_ptr<Transport> transport, const DeviceOptions& opts,
                                        std::string* error);
    ~Device();
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    const wire::virgl_renderer_capset_drm& caps() const { return caps_; }
    // Not va_start(): <stdarg.h> makes that a function-like macro.
    uint64_t va_range_start() const { return caps_.u.msm.va_start; }
    uint64_t va_range_size() const { return caps_.u.msm.va_size; }
    // The host serves fdnc's extension ccmds (fdnc_ext.h), as its capset says: IovaMode::Host works.
    bool host_has_fdnc_extensions() const { return caps_.pad == wire::FDNC_CAPSET_EXTENSIONS_MARKER; }
    uint32_t priorities() const { return priorities_; }
    const DeviceOptions& options() const { return opts_; }

    // bo_new never waits on the host (IovaMode::Guest): the iova comes from the guest heap and
    // GEM_NEW is queued ahead of anything that uses the buffer. nullptr + *err on failure:
    // -EINVAL bad size/flags, -ENOMEM address space exhausted or context lost.
    Bo* bo_new(uint64_t size, uint32_t flags, const char* name, int* err);
    // A bo at a caller-chosen iova (replaying a capture at its original addresses): reserves
    // exactly [iova, iova + size) in the guest heap, then GEM_NEW as bo_new does, never cached or
    // suballocated. IovaMode::Guest only. -EINVAL bad args / host mode / outside the VA range,
    // -ENOSPC range still in use after in-flight submits retired.
    Bo* bo_new_at(uint64_t iova, uint64_t size, uint32_t flags, const char* name, int* err);
    // Imports a dma-buf; the same resource imported twice gives the same Bo (new reference).
    // nullptr + *err on failure: -EIO context lost; the transport's import error as is (-EBADF fd
    // is not a file, -EOPNOTSUPP vtest has no import, -EPIPE host gone); -EINVAL the resource's
    // size is 0 or above 1 TiB; -ENOMEM no iova range left for it; the error of resolving its
    // res_id or of queuing its SET_IOVA (-EIO when the request buffer refused it).
    Bo* bo_import(int fd, int* err);

    // A submitqueue at priority min(prio, priorities() - 1) (P1): one round trip. nullptr + *err on
    // failure: -EIO context lost; -EBUSY every one of kMaxPipes slots is in use; -ETIMEDOUT the
    // host did not answer within DeviceOptions::sync_timeout_ns; -EPIPE host gone; -EINVAL the host
    // refused SUBMITQUEUE_NEW (IOCTL_SIMPLE carries only 0/-1, P4).
    Pipe* pipe_new(uint32_t prio, int* err);

    // 0 while usable; -EIO once the context is lost: the host reported an asynchronous error, or
    // a failed flush dropped requests (RequestBuffer::broken()).
    int status();
    DeviceStats stats();

    // Non-blocking: learns which submits retired and releases what waited for them.
    void retire();
    // Releases every cached bo (their iovas go through the quarantine as usual).
    void trim_cache();
    // Gives back every empty suballocation block (normally one per size class is kept).
    void trim_heaps();
    // Polls every pipe's fences (non-blocking) so fences_retired() sees fresh state; releases
    // nothing (retire() does).
    void poll_fences();

    // --- for Bo / Pipe / Submit / BoCache / BoHeap (the core's private contract) ---
    RequestBuffer& requests() { return *requests_; }
    Transport& transport() { return *transport_; }
    HostWaitCounters& host_waits() { return waits_; }
    std::mutex& fence_lock() { return fence_lock_; }
    bool fences_retired(const std::vector<FencePoint>& fences);
    void bo_destroy(Bo* bo); // refcount reached zero
    void bo_destroy_backing(Bo* bo); // host object + iova, through the quarantine
    int resolve_res_id(Bo* bo, uint32_t* res_id);
    Bo* bo_new_backing(uint64_t size, uint32_t flags, const char* name, int* err,
                       std::optional<uint64_t> at = std::nullopt); // no cache/heap
    void pipe_destroyed(Pipe* pipe);
    FenceTimeline* timeline(uint32_t slot) { return slot < kMaxPipes ? &timelines_[slot] : nullptr; }
    void count_submit() { submits_.fetch_add(1, std::memory_order_relaxed); }
    IovaHeap::Stats heap_stats();
    size_t quarantined_ranges();

private:
    Device(std::unique_ptr<Transport> transport, const DeviceOptions& opts);
    int init(std::string* error);
    std::optional<IovaHeap::Allocation> alloc_iova(uint64_t size, uint64_t align, int* err,
                                       std::optional<uint64_t> at = std::nullopt);
    void free_host_object(uint32_t handle, uint32_t res_id, bool has_iova);
    void release_iova(uint64_t iova);
    // Tells the quarantine which submits retired; it releases the ranges that waited for them.
    void release_retired_locked();
    Bo* hand_out(Bo* bo, std::optional<uint64_t> size = std::nullopt); // the bo constructors' epilogue
    void flush_released_locked();
    // A range alloc_iova handed out and nobody used (the bo was never made), back to the heap.
    void release_range_locked(IovaHeap::Allocation range);
    void flush_released();
    uint32_t check_async_error();
    int host_assign_iova(Bo* bo); // IovaMode::Host

    DeviceOptions opts_;
    std::unique_ptr<Transport> transport_;
    // TransportInfo::host_assigns_res_id, read once: info() builds a std::string each call, a
    // malloc and a format that bo_new need not pay.
    bool host_assigns_res_id_ = false;
    wire::virgl_renderer_capset_drm caps_{};
    uint32_t priorities_ = 1;
    uint32_t shmem_handle_ = 0;
    void* shmem_ = nullptr;
    std::unique_ptr<RequestBuffer> requests_;
    HostWaitCounters waits_;
    std::atomic<uint64_t> bo_new_waits_{0};

    std::mutex lock_; // heap, quarantine, handle table, pipes, pending host objects
    std::unique_ptr<IovaHeap> heap_;
    std::unique_ptr<IovaQuarantine> quarantine_;
    std::unique_ptr<BoCache> cache_;
    std::unique_ptr<BoHeap> suballoc_;
    std::unordered_map<uint32_t, Bo*> handles_;      // transport handle -> bo (import dedup)
    struct ParkedObject { uint32_t handle; uint32_t res_id; };
    std::unordered_map<uint64_t, ParkedObject> parked_; // iova -> host object waiting for retire
    std::vector<uint32_t> to_close_;                    // handles to close after the next flush
    bool slot_busy_[kMaxPipes] = {};
    uint32_t retired_seen_[kMaxPipes] = {};            // last seqno told to the quarantine
    Pipe* pipes_[kMaxPipes] = {};               // live pipes by slot (under lock_)
    std::array<FenceTimeline, kMaxPipes> timelines_; // per slot, for the device's whole life
    std::atomic<uint32_t> next_blob_id_{1};
    uint64_t va_peak_ = 0;

    std::mutex fence_lock_; // bo fence lists (Mesa's fence_lock)

    std::atomic<uint32_t> seen_async_error_{0};
    std::atomic<bool> lost_{false};
    std::atomic<uint64_t> live_bos_{0};
    std::atomic<uint64_t> submits_{0};
    friend class Bo;
};

} // namespace fdnc
