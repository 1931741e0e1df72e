// IovaHeap: constant-time allocator for the guest-owned GPU address range [start, start + size).
//
// The guest picks every iova itself (PROTOCOL.md B4, A5, G9), so this heap decides which GPU
// addresses a bo gets. Mesa's util_vma_heap walks a sorted hole list (O(holes)); this heap is a
// two-level segregated fit (TLSF-style) allocator whose cost does not depend on the number of
// live ranges.
//
// Units. Everything is kept in 4 KiB pages (absolute page numbers, addr >> 12), so a 2^64 range
// is at most 2^52 pages. Sizes are rounded up to whole pages.
//
// Blocks. The range is tiled by blocks; each block is a Node in a pool (std::vector indexed by
// u32, recycled through a free-node list, so after warm-up nothing is allocated). A node holds
// its first page plus a "free" flag, its physical neighbours (prev/next by address) and, while
// free, its links in a size-class list. A block's size is next.page - page: a sentinel node at
// the end of the range makes that hold for the last block, so no size field is stored.
//
// Size classes. A size of p pages maps to a flat bin index: p itself for p < 32 (exact bins),
// else 32 * (msb(p) - 4) + the next 5 bits below the msb (32 linear sub-bins per power of two,
// worst-case class spread 1/32 = 3%). One 64-bit bitmap says which first-level rows are
// non-empty and a 32-bit bitmap per row says which bins are, so "first non-empty bin >= b" is
// two count-trailing-zeros.
//
// Allocation of p pages aligned to a pages. need = p + a - 1 pages guarantee an aligned fit in
// any block, so every block in the bin of `need` rounded up to its class's upper bound, or any
// higher bin, fits. (1) Good fit first: up to kMaxProbes blocks from the bins between the exact
// class of p and that guaranteed bin are checked one by one (same-class blocks, blocks whose
// alignment padding is smaller than the worst case). Taking those keeps big blocks whole, which
// is what keeps a nearly full heap usable, and finds the tight fits (alignment = the whole range)
// a pure rounded-up search must skip. (2) Else the head of the first non-empty bin at or above
// the guaranteed one. The front padding before an aligned start becomes a free block of its own
// and the tail after the allocation another, so alignment wastes no space.
//
// Free. A hash table (bucket heads, chained through the free-list link of live nodes, which a
// live node does not use; grown only when live ranges exceed the bucket count) maps an iova to
// its node in O(1) expected. The block is merged with a free
// previous and/or next neighbour immediately, so two free blocks are never adjacent and an
// empty heap is one block again.
//
// Metadata. 24 bytes per block (live or free) plus one 4-byte bucket per live range at a load
// factor between 1/2 and 1: at most 32 bytes per live range, plus the fixed 8 KiB bin table.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace fdnc {

class IovaHeap {
public:
    static constexpr uint64_t kPageSize = 4096;
    static constexpr unsigned kPageShift = 12;

    struct Stats {
        uint64_t live_ranges = 0;
        uint64_t live_bytes = 0;
        uint64_t free_bytes = 0;
        uint64_t largest_free = 0;
        uint64_t peak_live_bytes = 0;
        uint64_t failed_allocs = 0;  // includes invalid requests (size 0, bad alignment)
        uint64_t bad_frees = 0;      // free() of an address that is not a live allocation
    };

    // `start` is rounded up and `start + size` down to 4 KiB (the range is clamped at 2^64).
    IovaHeap(uint64_t start, uint64_t size);

    IovaHeap(const IovaHeap&) = delete;
    IovaHeap& operator=(const IovaHeap&) = delete;
    IovaHeap(IovaHeap&&) noexcept = default;
    IovaHeap& operator=(IovaHeap&&) noexcept = default;

    // Returns an iova in range aligned to `align`, or nullopt (counted in failed_allocs) when the
    // request is invalid (size 0, align not a power of two) or no free block fits. Alignments
    // below 4 KiB are raised to 4 KiB.
    std::optional<uint64_t> alloc(uint64_t size, uint64_t align = kPageSize);

    // Reserves exactly [iova, iova + size rounded up to pages) as one live allocation (replaying a
    // capture at its original addresses). iova must be page aligned; false (counted in
    // failed_allocs) when any page of the range is live, outside the heap, or the request is
    // invalid. Cost: O(free blocks + bins), a scan of the size-class lists, because TLSF keeps no
    // address index of free blocks; fine for replay, not for the hot path.
    bool alloc_at(uint64_t iova, uint64_t size);

    // Frees a live allocation. Anything else is counted in bad_frees and leaves the heap
    // untouched; in strict mode (the default in builds without NDEBUG) it also asserts.
    void free(uint64_t iova);

    bool is_live(uint64_t iova) const { return find_live(iova) != kNil; }
    bool owns(uint64_t iova) const { return is_live(iova); }
    // Page-rounded size of a live allocation, 0 if `iova` is not live.
    uint64_t allocation_size(uint64_t iova) const;

    Stats stats() const;
    uint64_t start() const { return start_page_ << kPageShift; }
    uint64_t size() const { return (end_page_ - start_page_) << kPageShift; }

    // Strict mode asserts on a bad free; tests turn it off to exercise the counted path.
    void set_strict(bool strict) { strict_ = strict; }
    // Walks every block, list and bitmap; false if any invariant is broken. O(blocks): for tests.
    bool check_invariants() const;
    // Pre-sizes the node pool and hash for `live_ranges` so later calls never allocate.
    void reserve(uint32_t live_ranges);

private:
    static constexpr uint32_t kNil = 0xffffffffu;
    static constexpr unsigned kSlBits = 5;
    static constexpr unsigned kSlCount = 1u << kSlBits;
    static constexpr unsigned kFlCount = 64;
    static constexpr unsigned kBinCount = kFlCount * kSlCount;
    static constexpr unsigned kMaxProbes = 8;
    static constexpr uint64_t kFreeFlag = 1ull << 63;

    struct Node {
        uint64_t page_flags;  // first page | kFreeFlag when free
        uint32_t phys_prev;
        uint32_t phys_next;
        uint32_t link_prev;   // free: size-class list; live: unused
        uint32_t link_next;   // free: size-class list; live: hash chain; pooled: node free list
    };
    static_assert(sizeof(Node) == 24, "metadata budget: 24 B per block");

    uint64_t page(uint32_t n) const { return nodes_[n].page_flags & ~kFreeFlag; }
    bool is_free(uint32_t n) const { return (nodes_[n].page_flags & kFreeFlag) != 0; }
    uint64_t block_pages(uint32_t n) const { return page(nodes_[n].phys_next) - page(n); }

    static unsigned bin_of(uint64_t pages);
    static unsigned bin_round_up(uint64_t pages);  // kBinCount when no bin can guarantee a fit
    unsigned first_bin_from(unsigned bin) const;   // kBinCount when none

    uint32_t new_node();
    void release_node(uint32_t n);
    void insert_free(uint32_t n);
    void remove_free(uint32_t n);
    uint32_t carve(uint32_t n, uint64_t first_page, uint64_t pages);

    uint32_t find_live(uint64_t iova) const;
    size_t bucket_of(uint64_t page) const;
    void hash_insert(uint32_t n);
    void hash_grow();
    bool bad_free();

    std::vector<Node> nodes_;
    uint32_t pool_free_ = kNil;
    std::vector<uint32_t> buckets_;
    unsigned bucket_shift_ = 64;
    uint64_t fl_bitmap_ = 0;
    uint32_t sl_bitmap_[kFlCount] = {};
    uint32_t bin_head_[kBinCount];

    uint64_t start_page_ = 0;
    uint64_t end_page_ = 0;
    uint32_t sentinel_ = kNil;
    uint64_t live_ranges_ = 0;
    uint64_t live_pages_ = 0;
    uint64_t peak_live_pages_ = 0;
    uint64_t failed_allocs_ = 0;
    uint64_t bad_frees_ = 0;
#ifdef NDEBUG
    bool strict_ = false;
#else
    bool strict_ = true;
#endif
};

}  // namespace fdnc
