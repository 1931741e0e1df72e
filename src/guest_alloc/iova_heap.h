// IovaHeap: constant-time allocator for the guest-owned GPU address range [start, start + size).
//
// The guest picks every iova itself (PROTOCOL.md B4, A5, G9), so this heap decides which GPU
// addresses a bo gets. Mesa's util_vma_heap walks a sorted hole list (O(holes)); this heap is a
// two-level segregated fit (TLSF-style) allocator whose cost does not depend on the number of
// live ranges. The structure, in six parts:
//
// Units. Addresses are u32 unit numbers relative to the start of the range. A unit is a 4 KiB
// page for every range up to 16 TiB; a larger range (a whole 48-bit VA) uses the smallest
// power-of-two unit that keeps it below 2^32 units (64 KiB, 128 KiB, ...), and sizes and
// alignments there are rounded to that unit.
//
// Blocks. The range is tiled by blocks, live or free; each is a 16-byte Node in a pool
// (std::vector indexed by u32, recycled through a free-node list, grown by 1/16 at a time; after
// warm-up nothing is allocated). A node holds its first unit, its neighbour above (next) and two
// links: a free block's size-class list (link_prev, link_next); a live block's hash chain
// (link_next) and, in link_prev, kLiveBit (which marks it live) or'ed with the free block just
// below it (kNil when the block below is live or there is none). That is the only downward link
// the heap needs: free blocks are never adjacent, so the block below a free block is live and
// never changes with it, and the block at unit 0 keeps its node for good (first_), so the blocks
// can be walked upwards from there. A block's size is next.page - page; a sentinel node at the
// end of the range makes that hold for the last block. "No node" (kNil) is node 0, a real unused
// node, so list updates write to it instead of testing for a missing neighbour; its page is
// kNoUnit, which no lookup matches. The fields are ordered so that the ones read together
// (link_next + page, page + link_prev) sit side by side; four nodes fill a cache line.
//
// Size classes. A size of p units maps to a bin: p itself for p < 32 (exact bins), else
// 32 * (msb(p) - 4) + the next 5 bits below the msb (32 linear sub-bins per power of two, class
// spread at most 1/32; sizes below 256 units read their bin from a 256-byte table, which does not
// mispredict the way a branch on "below 32" does when sizes straddle it). A 32-bit bitmap says
// which rows (powers of two) are non-empty and a 32-bit bitmap per row which bins are, so "first
// non-empty bin >= b" is two count-trailing-zeros.
//
// Allocation of p units aligned to a units. The short path (unaligned, heap at most 7/8 full):
// the head of p's own class if it is long enough (below 32 units always: an exact fit), else the
// head of the first non-empty class at or above bin_round_up(p), every block of which fits: no
// list is walked. Otherwise (alloc_slow): (1) p's own class: its head, or up to kMaxProbes
// blocks when nearly full; (2) aligned and nearly full: the heads of up to kMaxProbes classes
// below the guaranteed one (most fit with some padding); (3) the head of the first non-empty
// class at or above bin_round_up(p + a - 1), where every block fits padding included; (4) if
// there is none (nearly full), a bounded scan of up to kMaxProbes blocks in each of kMaxProbes
// lists below it. The front padding before an aligned start and the tail after the range become
// free blocks of their own, so alignment wastes no space. When the rest of a block stays in its
// class, the block keeps its node and list place and only moves up.
//
// Nearly full (more than 7/8 of the range live), the heap trades a little speed for packing: the
// probes of (1) and (2), and lists kept lower-address-first (one step of address ordering on
// insert), so allocations gather low and the high blocks stay whole. At 95 % this is what keeps
// failed requests near best fit's.
//
// Free. The handle API (allocate/release) names the block in the handle it returns, so a release
// is O(1) with no lookup: the block's node index is checked against the iova and used. The
// by-address API (alloc/free(iova)) needs an index from iova to node: a hash table (bucket heads, chained through the live nodes' link_next, load factor 1/2
// to 1, doubled when the live ranges reach the bucket count; up to 2 while the table is at most
// 64 buckets, whose chains stay in L1) maps an iova to its node. It is built on the first
// by-address call (walking the blocks once) and kept from then on by both APIs; a heap used only
// through handles never has one, which is both its speed and its metadata. Node 0's page is kNoUnit, so a
// chain walk compares pages only and tests for its end only after a mismatch. The block
// merges with a free neighbour below and/or above at once, so two free blocks are never adjacent
// and an empty heap is one block again; the merged block keeps the lower node (the free one
// below, else its own), and the list place of the block it grew from when its class does not
// change.
//
// Metadata. 16 bytes per block (after warm-up 1.1-1.4 blocks per live range), plus, with the
// address index, 2-8 bytes of buckets per live range (bench/README.md has the measured bytes per
// live range); fixed: 4 KiB of bin heads and 132 B of bitmaps in the object.
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
        bool address_index = false;  // a by-address call has been made: the iova -> block hash exists
    };

    // `start` is rounded up and `start + size` down to the unit, 4 KiB for ranges below 16 TiB
    // (the range is clamped at 2^64).
    IovaHeap(uint64_t start, uint64_t size);

    IovaHeap(const IovaHeap&) = delete;
    IovaHeap& operator=(const IovaHeap&) = delete;
    IovaHeap(IovaHeap&&) noexcept = default;
    IovaHeap& operator=(IovaHeap&&) noexcept = default;

    // A live allocation as the handle API hands it out: its iova and the heap's name for its
    // block. Keep it to release the range; block 0 is never a live block.
    struct Allocation {
        uint64_t iova = 0;
        uint32_t block = 0;
    };

    // Returns a range in the heap aligned to `align`, or nullopt (counted in failed_allocs) when
    // the request is invalid (size 0, align not a power of two) or no free block fits. Sizes are
    // rounded up to whole units; alignments below the unit are raised to it. The fast API: with
    // release() it needs no address index.
    std::optional<Allocation> allocate(uint64_t size, uint64_t align = kPageSize);
    // Frees what allocate() returned, O(1). A handle that does not name a live block starting at
    // its iova (released already, forged) is counted in bad_frees and changes nothing (strict
    // mode also asserts). A block released and handed out again at the same iova is the new
    // allocation's, as with free(iova).
    void release(Allocation a);
    // Unit-rounded size of the allocation, 0 if the handle does not name a live block.
    uint64_t allocation_size(Allocation a) const;

    // The by-address API: the same allocation as allocate(), returning only the iova; the heap
    // keeps an iova -> block hash for free(iova), built on the first by-address call.
    std::optional<uint64_t> alloc(uint64_t size, uint64_t align = kPageSize);

    // Reserves exactly [iova, iova + size rounded up to units) as one live allocation (replaying a
    // capture at its original addresses). iova must be unit aligned; false (counted in
    // failed_allocs) when any page of the range is live, outside the heap, or the request is
    // invalid. Cost: O(free blocks + bins), a scan of the size-class lists, because TLSF keeps no
    // address index of free blocks; fine for replay, not for the hot path.
    bool alloc_at(uint64_t iova, uint64_t size);

    // Frees a live allocation. Anything else is counted in bad_frees and leaves the heap
    // untouched; in strict mode (the default in builds without NDEBUG) it also asserts.
    void free(uint64_t iova);

    // By-address queries. O(1) once the address index exists (any by-address call builds it);
    // on a heap used only through handles they walk the blocks, O(blocks).
    bool is_live(uint64_t iova) const { return find_live(iova) != kNil; }
    bool owns(uint64_t iova) const { return is_live(iova); }
    // Unit-rounded size of a live allocation, 0 if `iova` is not live.
    uint64_t allocation_size(uint64_t iova) const;

    Stats stats() const;  // walks the largest size class for largest_free: not for hot paths
    uint64_t live_bytes() const { return live_units_ << unit_shift_; }
    uint64_t start() const { return base_unit_ << unit_shift_; }
    uint64_t size() const { return uint64_t{end_unit_} << unit_shift_; }

    // Strict mode asserts on a bad free; tests turn it off to exercise the counted path.
    void set_strict(bool strict) { strict_ = strict; }
    // Walks every block, list and bitmap; false if any invariant is broken. O(blocks): for tests.
    bool check_invariants() const;
    // Pre-sizes the node pool and hash for `live_ranges` so later calls never allocate.
    void reserve(uint32_t live_ranges);

private:
    // "No node" is node 0, a real but unused node: list updates may write to it instead of
    // testing for a missing neighbour first.
    static constexpr uint32_t kNil = 0;
    static constexpr uint32_t kNoUnit = 0xffffffffu;  // never a first unit (the range ends below)
    // link_prev of a live node (or the sentinel): kLiveBit | the free block below it (kNil when
    // the block below is live), so free() finds the block to merge with without a search. Node
    // indices stay below 2^31 (that many 16-byte nodes would be 32 GiB).
    static constexpr uint32_t kLiveBit = 0x80000000u;
    static constexpr uint32_t kPooled = 0x7fffffffu;  // link_prev of a node in the free-node pool
    static constexpr unsigned kSlBits = 5;
    static constexpr unsigned kSlCount = 1u << kSlBits;
    static constexpr unsigned kFlCount = 32;
    static constexpr unsigned kBinCount = kFlCount * kSlCount;
    static constexpr unsigned kMaxProbes = 4;

    // Field order: the fields read together sit together: link_next + page (a hash chain step),
    // page + link_prev (is the block free).
    struct Node {
        uint32_t link_next;  // free: size-class list; live: hash chain; pooled: node free list
        uint32_t page;       // first unit, relative to the range start
        uint32_t link_prev;  // free: size-class list; live: kLiveBit | free block below; pooled: kPooled
        uint32_t next;       // neighbour above (the sentinel for the last block)
    };
    static_assert(sizeof(Node) == 16, "metadata budget: 16 B per block");
    static Node make_node(uint32_t page, uint32_t next, uint32_t link_prev, uint32_t link_next) {
        Node n;
        n.page = page;
        n.next = next;
        n.link_prev = link_prev;
        n.link_next = link_next;
        return n;
    }

    // Past 7/8 occupancy the heap trades a little speed for packing (see alloc()).
    bool nearly_full() const { return live_units_ > tight_units_; }
    uint32_t page(uint32_t n) const { return nodes_[n].page; }
    bool is_free(uint32_t n) const { return nodes_[n].link_prev < kLiveBit; }
    // link_prev of a live block whose neighbour below is `free_below` (kNil: not a free block).
    static uint32_t live_mark(uint32_t free_below) { return kLiveBit | free_below; }
    uint32_t free_below(uint32_t live) const { return nodes_[live].link_prev & ~kLiveBit; }
    uint32_t block_units(uint32_t n) const { return page(nodes_[n].next) - page(n); }

    static unsigned bin_of(uint32_t units);
    static unsigned bin_round_up(uint64_t units);  // kBinCount when no bin can guarantee a fit
    unsigned first_bin_from(unsigned bin) const;   // kBinCount when none
    uint64_t align_up(uint32_t unit, uint64_t mask) const;

    uint32_t new_node();
    uint32_t grow_pool();
    void release_node(uint32_t n);
    template <bool kMaybeTight>
    void insert_free(uint32_t n, uint32_t units);
    void remove_free(uint32_t n, unsigned bin);
    void replace_free(uint32_t old, uint32_t with, unsigned bin);  // `with` takes old's list place
    void pop_head(unsigned bin, uint32_t next);
    void resize_free(uint32_t n, uint32_t old_units, uint32_t units);
    // kMaybeTight false: the caller knows the heap is not nearly full (insert_free's ordering).
    template <bool kMaybeTight>
    uint32_t carve(uint32_t n, uint32_t first, uint32_t units);
    template <bool kMaybeTight>
    uint32_t take(uint32_t n, unsigned bin, uint32_t first, uint32_t units);
    uint32_t take_head(uint32_t n, unsigned bin, uint32_t units);
    uint32_t alloc_block(uint64_t size, uint64_t align);  // the live node, or kNil
    uint32_t alloc_slow(uint32_t units, uint64_t mask);
    void free_block(uint32_t n, uint32_t unit);
    uint32_t unit_of(uint64_t iova) const;  // kNoUnit unless a unit-aligned address in range

    uint32_t find_live(uint64_t iova) const;
    uint32_t live_block(Allocation a) const;  // the handle's node if it names a live block, else kNil
    size_t bucket_of(uint32_t unit) const;
    void build_index();
    void hash_insert(uint32_t n);
    void hash_unlink(uint32_t n, uint32_t unit);
    void hash_grow();
    bool bad_free();

    std::vector<Node> nodes_;
    uint32_t pool_free_ = kNil;
    bool indexed_ = false;  // the by-address API has been used: buckets_ index every live block
    std::vector<uint32_t> buckets_;
    unsigned bucket_shift_ = 32;
    uint64_t hash_limit_ = 0;  // live ranges the buckets take before they double (load <= 1)
    uint32_t fl_bitmap_ = 0;
    uint32_t sl_bitmap_[kFlCount] = {};
    uint32_t bin_head_[kBinCount];

    uint64_t base_unit_ = 0;  // absolute unit number of relative unit 0
    unsigned unit_shift_ = kPageShift;
    uint32_t end_unit_ = 0;  // relative; the sentinel's page
    uint32_t tight_units_ = 0;  // 7/8 of end_unit_
    uint32_t sentinel_ = kNil;
    uint32_t first_ = kNil;  // the block at unit 0 (the sentinel in an empty range): never changes
    // live_ranges_ and live_units_ are not neighbours: GCC would otherwise update the pair with
    // SSE (a dozen instructions for two adds).
    uint64_t live_ranges_ = 0;
    uint64_t peak_live_units_ = 0;
    uint64_t live_units_ = 0;
    uint64_t failed_allocs_ = 0;
    uint64_t bad_frees_ = 0;
#ifdef NDEBUG
    bool strict_ = false;
#else
    bool strict_ = true;
#endif
};

}  // namespace fdnc
