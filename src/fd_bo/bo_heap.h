// BoHeap: suballocation of small buffers from heap blocks of 64 KiB-4 MiB (Mesa's freedreno_bo_heap, 7.6).
// A sub-bo's iova is its block's iova + offset; it never exists on the host, so creating one costs
// nothing on the wire. Each block serves one power-of-two slot size (64 B .. kMaxSuballoc), which
// keeps alloc and free O(1); a freed slot is reused only once every submit that used it retired.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace fdnc {

class Bo;
class Device;

struct BoHeapBlock {
    Bo* bo = nullptr; // the backing bo (a normal bo with its own blob and iova)
    uint32_t slot_size = 0;
    uint32_t nslots = 0;
    std::vector<uint32_t> free_slots;
    uint32_t used = 0;
};

class BoHeap {
public:
    static constexpr uint64_t kBlockSize = 4u << 20; // the largest block (Mesa's size)
    static constexpr uint64_t kMinSlot = 64;
    static constexpr uint64_t kMaxSuballoc = 256u << 10;

    BoHeap(Device& dev, uint32_t flags);
    ~BoHeap();
    static bool eligible(uint64_t size, uint32_t flags);

    Bo* alloc(uint64_t size, const char* name, int* err);
    // refcount reached 0: the slot is reused once idle.
    void free(Bo* sub);
    // Returns idle slots, drops empty surplus blocks. Caller must not hold the device lock.
    void retire();
    // Drops every empty block (after retire()).
    void trim();
    // Teardown: waits nothing; the device has already drained the pipes.
    void release_all();
    uint64_t suballocs() const { return suballocs_; }

private:
    static unsigned size_class(uint64_t size);
    static uint64_t block_size(uint32_t slot_size);
    BoHeapBlock* find_block_locked(unsigned cls);
    void release_slot(Bo* sub);

    Device& dev_;
    uint32_t flags_;
    std::mutex lock_;
    std::vector<std::vector<std::unique_ptr<BoHeapBlock>>> classes_;
    std::vector<Bo*> pending_; // freed sub-bos waiting for their submits
    std::vector<Bo*> retired_blocks_; // empty surplus blocks to unref outside the lock
    uint64_t suballocs_ = 0;
};

} // namespace fdnc
