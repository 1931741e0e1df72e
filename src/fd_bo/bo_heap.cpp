#include "fd_bo/bo_heap.h"

#include <algorithm>
#include <bit>
#include <cerrno>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"

namespace fdnc {

namespace {
constexpr unsigned kClasses = std::countr_zero(BoHeap::kMaxSuballoc) - std::countr_zero(BoHeap::kMinSlot) + 1;
}

BoHeap::BoHeap(Device& dev, uint32_t flags) : dev_(dev), flags_(flags), classes_(kClasses) {}

BoHeap::~BoHeap() { release_all(); }

bool BoHeap::eligible(uint64_t size, uint32_t flags) {
    return size <= kMaxSuballoc &&
           !(flags & (kBoShared | kBoScanout | kBoNoCache | kBoCachedCoherent | kBoGpuReadonly));
}

unsigned BoHeap::size_class(uint64_t size) {
    const uint64_t s = std::bit_ceil(std::max<uint64_t>(size, kMinSlot));
    return static_cast<unsigned>(std::countr_zero(s) - std::countr_zero(kMinSlot));
}

uint64_t BoHeap::block_size(uint32_t slot_size) {
    // 64 slots per block, between 64 KiB and 4 MiB: small classes must not pin 4 MiB of address
    // space each (there is one block list per class), large ones keep Mesa's block size.
    return std::clamp<uint64_t>(uint64_t{slot_size} * 64, 64u << 10, kBlockSize);
}

BoHeapBlock* BoHeap::find_block_locked(unsigned cls) {
    for (auto& b : classes_[cls])
        if (!b->free_slots.empty()) return b.get();
    return nullptr;
}

Bo* BoHeap::alloc(uint64_t size, const char* name, int* err) {
    const unsigned cls = size_class(size);
    const uint32_t slot_size = static_cast<uint32_t>(kMinSlot << cls);
    retire();
    std::unique_lock<std::mutex> g(lock_);
    BoHeapBlock* block = find_block_locked(cls);
    if (!block) {
        // A new block is an ordinary bo: its GEM_NEW is queued, nothing waits. Made without the
        // heap lock, since making it may trim this heap under address-space pressure.
        g.unlock();
        Bo* bbo = dev_.bo_new_backing(block_size(slot_size), flags_ | kBoNoCache, "fdnc-heap-block", err);
        if (!bbo) return nullptr;
        auto nb = std::make_unique<BoHeapBlock>();
        nb->bo = bbo;
        nb->slot_size = slot_size;
        nb->nslots = static_cast<uint32_t>(block_size(slot_size) / slot_size);
        nb->free_slots.reserve(nb->nslots);
        // Lowest offsets on top of the stack: fresh blocks fill from the bottom.
        for (uint32_t i = nb->nslots; i-- > 0;) nb->free_slots.push_back(i);
        g.lock();
        block = nb.get();
        classes_[cls].push_back(std::move(nb));
    }
    const uint32_t slot = block->free_slots.back();
    block->free_slots.pop_back();
    block->used++;
    Bo* sub = new Bo(&dev_);
    sub->block_bo_ = block->bo;
    sub->block_ = block;
    sub->block_offset_ = uint64_t{slot} * slot_size;
    sub->iova_ = block->bo->iova() + sub->block_offset_;
    sub->size_ = size;
    sub->alloc_size_ = slot_size;
    sub->flags_ = flags_;
    if (name) sub->name_ = name;
    suballocs_++;
    return sub;
}

void BoHeap::free(Bo* sub) {
    if (dev_.fences_retired(sub->fences_snapshot())) {
        std::lock_guard<std::mutex> g(lock_);
        release_slot(sub);
        return;
    }
    std::lock_guard<std::mutex> g(lock_);
    pending_.push_back(sub);
}

void BoHeap::release_slot(Bo* sub) {
    BoHeapBlock* block = sub->block_;
    block->free_slots.push_back(static_cast<uint32_t>(sub->block_offset_ / block->slot_size));
    block->used--;
    delete sub;
    if (block->used != 0) return;
    // Keep one empty block per class for the next frame; give surplus ones back.
    auto& list = classes_[size_class(block->slot_size)];
    size_t empty = 0;
    for (auto& b : list) empty += b->used == 0;
    if (empty <= 1) return;
    auto it = std::find_if(list.begin(), list.end(), [&](auto& b) { return b.get() == block; });
    Bo* bbo = block->bo;
    list.erase(it);
    retired_blocks_.push_back(bbo);
}

void BoHeap::retire() {
    std::vector<Bo*> drop;
    {
        std::lock_guard<std::mutex> g(lock_);
        if (!pending_.empty()) {
            dev_.poll_fences();
            auto keep = pending_.begin();
            for (Bo* sub : pending_) {
                if (dev_.fences_retired(sub->fences_snapshot())) release_slot(sub);
                else *keep++ = sub;
            }
            pending_.erase(keep, pending_.end());
        }
        drop.swap(retired_blocks_);
    }
    // The block bo's own fences cover every submit of its sub-bos: the normal free path waits.
    for (Bo* b : drop) b->unref();
}

void BoHeap::trim() {
    retire();
    std::vector<Bo*> drop;
    {
        std::lock_guard<std::mutex> g(lock_);
        for (auto& list : classes_) {
            for (auto it = list.begin(); it != list.end();) {
                if ((*it)->used == 0) {
                    drop.push_back((*it)->bo);
                    it = list.erase(it);
                } else {
                    ++it;
                }
            }
        }
    }
    for (Bo* b : drop) b->unref();
}

void BoHeap::release_all() {
    std::vector<Bo*> drop;
    {
        std::lock_guard<std::mutex> g(lock_);
        for (Bo* sub : pending_) delete sub;
        pending_.clear();
        for (auto& list : classes_) {
            for (auto& b : list) drop.push_back(b->bo);
            list.clear();
        }
        for (Bo* b : retired_blocks_) drop.push_back(b);
        retired_blocks_.clear();
    }
    for (Bo* b : drop) b->unref();
}

} // namespace fdnc
