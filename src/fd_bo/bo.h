// Bo: a GPU buffer object (Mesa's fd_bo). Refcounted; the last unref hands it back to the device,
// which recycles it (bo cache, suballocation heap) or frees it once every submit that used it has
// retired (the quarantine rule that makes guest-chosen iovas safe).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "fd_bo/fence_point.h"

namespace fdnc {

class Device;
class Pipe;
struct BoHeapBlock;

// Public flags (include/fdnc/fdnc.h FDNC_BO_*).
inline constexpr uint32_t kBoCachedCoherent = 0x01;
inline constexpr uint32_t kBoGpuReadonly = 0x02;
inline constexpr uint32_t kBoScanout = 0x04;
inline constexpr uint32_t kBoShared = 0x08;
inline constexpr uint32_t kBoNoMap = 0x10;
inline constexpr uint32_t kBoNoCache = 0x20;
inline constexpr uint32_t kBoValidFlags = 0x3f;

class Bo {
public:
    uint64_t iova() const { return iova_; }
    uint64_t size() const { return size_; }
    uint32_t flags() const { return flags_; }
    Device& device() const { return *dev_; }

    // CPU mapping (lazy). Syncs with pending uploads first (C1). nullptr + *err on failure.
    void* map(int* err = nullptr);
    // Writes through the host (GEM_UPLOAD, C3): for buffers the CPU does not map.
    int upload(const void* src, uint64_t off, uint64_t len);
    // Waits until the CPU may access the buffer for `op` (MSM_PREP_*): the pipes' submits that use
    // it, then the host-side prep. NOSYNC: -EBUSY instead of waiting.
    int cpu_prep(Pipe* pipe, uint32_t op, int64_t timeout_ns = -1);
    int set_name(const char* name);
    // New dma-buf fd (caller owns it) or -errno.
    int export_dmabuf();

    Bo* ref() {
        refcnt_.fetch_add(1, std::memory_order_relaxed);
        return this;
    }
    void unref();

    // --- core-private ---
    // The bo the host knows (a suballocated bo lives inside its block's bo) and the offset in it.
    Bo* backing() { return block_bo_ ? block_bo_ : this; }
    uint64_t backing_offset() const { return block_offset_; }
    void add_fence(FencePoint f);
    std::vector<FencePoint> fences_snapshot();

private:
    friend class Device;
    friend class BoCache;
    friend class BoHeap;
    Bo(Device* dev) : dev_(dev) {}
    ~Bo() = default;

    Device* dev_;
    std::atomic<int32_t> refcnt_{1};
    uint64_t iova_ = 0;
    uint32_t iova_block_ = 0; // IovaHeap::Allocation::block of iova_ (0: allocated by address)
    uint64_t size_ = 0;       // bytes usable by the client
    uint64_t alloc_size_ = 0; // bytes of the host object / iova range (bucket size)
    uint32_t flags_ = 0;
    uint32_t msm_flags_ = 0;
    uint32_t handle_ = 0; // transport handle; 0 for suballocated bos
    uint32_t res_id_ = 0; // resolved lazily (vtest)
    bool imported_ = false;
    bool client_ = false; // handed to a client (counted in bos_live); heap blocks are not
    bool exported_ = false;
    std::string name_;

    Bo* block_bo_ = nullptr; // suballocated: the heap block that backs it
    BoHeapBlock* block_ = nullptr;
    uint64_t block_offset_ = 0;

    std::atomic<void*> map_{nullptr};
    std::atomic<uint32_t> upload_seqno_{0};
    std::atomic<bool> upload_pending_{false};

    // Last submit seqno per pipe that referenced this bo (guarded by Device::fence_lock()).
    std::vector<FencePoint> fences_;
    // Bucket bookkeeping while in the cache.
    int64_t cached_at_ns_ = 0;
};

} // namespace fdnc
