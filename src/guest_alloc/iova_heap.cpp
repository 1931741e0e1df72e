#include "guest_alloc/iova_heap.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace fdnc {

namespace {

constexpr uint64_t kMaxPage = 1ull << 52;  // 2^64 bytes in pages
constexpr uint32_t kHashMul = 0x9E3779B1u;  // Fibonacci hashing (2^32 / golden ratio)
constexpr unsigned kInitialBucketBits = 3;
constexpr uint64_t kMaxUnits = 0xffffffffull;  // relative units must fit a u32, end included
// Live ranges a table of `buckets` takes before it doubles: load up to 2 while the whole table is
// 256 bytes (its chains are a few nodes in L1 at most), up to 1 above.
constexpr uint64_t kSmallTableBuckets = 64;
constexpr uint64_t hash_limit(size_t buckets) {
    return buckets <= kSmallTableBuckets ? 2 * buckets : buckets;
}

// ---- bit tricks ----------------------------------------------------------------------------

constexpr unsigned msb(uint64_t x) { return 63 - static_cast<unsigned>(std::countl_zero(x)); }
constexpr unsigned lowest_bit(uint32_t x) { return static_cast<unsigned>(std::countr_zero(x)); }
constexpr uint32_t bits_from(unsigned i) { return i >= 32 ? 0 : ~0u << i; }  // bits i..31

}  // namespace

// The hot path is a handful of tiny helpers; make sure they fold into alloc()/free().
#define FDNC_HOT_INLINE [[gnu::always_inline]] inline

IovaHeap::IovaHeap(uint64_t start, uint64_t size) {
    std::fill(std::begin(bin_head_), std::end(bin_head_), kNil);
    uint64_t start_page = (start >> kPageShift) + ((start & (kPageSize - 1)) != 0 ? 1 : 0);
    const bool overflows = size > ~0ull - start;
    uint64_t end_page = overflows ? kMaxPage : (start + size) >> kPageShift;
    if (end_page < start_page)
        end_page = start_page;
    // A range of 2^32 pages (16 TiB) or more counts in larger units (see the header).
    unsigned extra = 0;
    while (((end_page >> extra) - ((start_page + (1ull << extra) - 1) >> extra)) > kMaxUnits)
        ++extra;
    unit_shift_ = kPageShift + extra;
    base_unit_ = (start_page + (1ull << extra) - 1) >> extra;
    const uint64_t end = std::max(end_page >> extra, base_unit_);
    end_unit_ = static_cast<uint32_t>(end - base_unit_);
    tight_units_ = end_unit_ - end_unit_ / 8;

    new_node();  // node 0 is kNil: list writes aimed at "no node" land there harmlessly
    nodes_[kNil].page = kNoUnit;  // matches no unit: a hash chain or list ends without a test
    sentinel_ = new_node();
    nodes_[sentinel_] = make_node(end_unit_, kNil, live_mark(kNil), kNil);  // never free, never merged
    first_ = sentinel_;
    if (end_unit_ > 0) {
        const uint32_t n = new_node();
        nodes_[n] = make_node(0, sentinel_, kNil, kNil);
        nodes_[sentinel_].link_prev = live_mark(n);
        insert_free<true>(n, end_unit_);
        first_ = n;
    }
}

void IovaHeap::reserve(uint32_t live_ranges) {
    // Each live range can have one free block beside it.
    nodes_.reserve(size_t{2} * live_ranges + 2);
    while (indexed_ && buckets_.size() < live_ranges)
        hash_grow();
}

// ---- size classes --------------------------------------------------------------------------

constexpr unsigned bin_formula(uint32_t units, unsigned sl_bits) {
    if (units < (1u << sl_bits))
        return units;
    const unsigned top = msb(units);
    const unsigned sl = (units >> (top - sl_bits)) & ((1u << sl_bits) - 1);
    return (top - (sl_bits - 1)) * (1u << sl_bits) + sl;
}

// Sizes below 256 units (1 MiB in pages: most requests) take their bin from a table: a branch on
// "below 32 units" mispredicts about once per pair when sizes straddle it, as in W1.
constexpr unsigned kBinTableSize = 256;
struct BinTable {
    uint8_t bin[kBinTableSize];
};
constexpr BinTable make_bin_table(unsigned sl_bits) {
    BinTable t{};
    for (unsigned u = 0; u < kBinTableSize; ++u)
        t.bin[u] = static_cast<uint8_t>(bin_formula(u, sl_bits));
    return t;
}
constexpr BinTable kBinTable = make_bin_table(5);

FDNC_HOT_INLINE unsigned IovaHeap::bin_of(uint32_t units) {
    static_assert(kSlBits == 5 && bin_formula(kBinTableSize - 1, kSlBits) < 256);
    if (units < kBinTableSize) [[likely]]
        return kBinTable.bin[units];
    return bin_formula(units, kSlBits);
}

// The lowest bin whose every block holds `units`.
FDNC_HOT_INLINE unsigned IovaHeap::bin_round_up(uint64_t units) {
    if (units < kSlCount)
        return static_cast<unsigned>(units);
    const uint64_t rounded = units + (1ull << (msb(units) - kSlBits)) - 1;
    if (rounded > kMaxUnits)
        return kBinCount;
    return bin_of(static_cast<uint32_t>(rounded));
}

FDNC_HOT_INLINE unsigned IovaHeap::first_bin_from(unsigned bin) const {
    if (bin >= kBinCount)
        return kBinCount;
    unsigned fl = bin / kSlCount;
    const uint32_t row = sl_bitmap_[fl] & bits_from(bin % kSlCount);
    if (row != 0)
        return fl * kSlCount + lowest_bit(row);
    const uint32_t rows = fl_bitmap_ & bits_from(fl + 1);
    if (rows == 0)
        return kBinCount;
    fl = lowest_bit(rows);
    return fl * kSlCount + lowest_bit(sl_bitmap_[fl]);
}

// First relative unit at or after `unit` whose absolute address is aligned (mask = align - 1).
FDNC_HOT_INLINE uint64_t IovaHeap::align_up(uint32_t unit, uint64_t mask) const {
    return ((base_unit_ + unit + mask) & ~mask) - base_unit_;
}

FDNC_HOT_INLINE uint32_t IovaHeap::unit_of(uint64_t iova) const {
    const uint64_t unit_mask = (1ull << unit_shift_) - 1;
    const uint64_t rel = (iova >> unit_shift_) - base_unit_;  // below the range wraps high
    if ((rel >= end_unit_) | ((iova & unit_mask) != 0))
        return kNoUnit;
    return static_cast<uint32_t>(rel);
}

// ---- node pool and free lists --------------------------------------------------------------

FDNC_HOT_INLINE uint32_t IovaHeap::new_node() {
    if (pool_free_ != kNil) [[likely]] {
        const uint32_t n = pool_free_;
        pool_free_ = nodes_[n].link_next;
        return n;
    }
    return grow_pool();
}

// Out of line: the vector's growth code in every caller would cost the hot paths registers.
[[gnu::noinline]] uint32_t IovaHeap::grow_pool() {
    // Grow by 1/16: the pool's slack is metadata too. Amortized O(1) all the same, and it only
    // happens while the live set grows.
    assert(nodes_.size() < kPooled && "node indices must stay below kLiveBit");
    if (nodes_.size() == nodes_.capacity())
        nodes_.reserve(nodes_.size() + nodes_.size() / 16 + 8);
    nodes_.push_back(make_node(0, kNil, kNil, kNil));
    return static_cast<uint32_t>(nodes_.size() - 1);
}

FDNC_HOT_INLINE void IovaHeap::release_node(uint32_t n) {
    nodes_[n].link_next = pool_free_;
    nodes_[n].link_prev = kPooled;  // a stale handle to it is refused (release())
    pool_free_ = n;
}

// Pushes free block n (`units` long) on the front of its size-class list.
template <bool kMaybeTight>
FDNC_HOT_INLINE void IovaHeap::insert_free(uint32_t n, uint32_t units) {
    const unsigned bin = bin_of(units);
    const uint32_t head = bin_head_[bin];
    // page(kNil) is kNoUnit, so an empty list never takes this branch.
    if (kMaybeTight && nearly_full() && page(head) < page(n)) {
        // Nearly full: keep the lower address first (one step of address ordering), so
        // allocations gather at the low end and higher blocks stay whole.
        const uint32_t second = nodes_[head].link_next;
        nodes_[n].link_prev = head;
        nodes_[n].link_next = second;
        nodes_[second].link_prev = n;
        nodes_[head].link_next = n;
        return;
    }
    Node* const nodes = nodes_.data();
    nodes[n].link_prev = kNil;
    nodes[n].link_next = head;
    nodes[head].link_prev = n;  // kNil is node 0: a write there is thrown away
    const unsigned fl = bin / kSlCount;
    const uint32_t row = sl_bitmap_[fl] | 1u << (bin % kSlCount);
    const uint32_t rows = fl_bitmap_ | 1u << fl;
    sl_bitmap_[fl] = row;
    fl_bitmap_ = rows;
    bin_head_[bin] = n;
}

// Unlinks free block n from its list, `bin`. It stays "free" until link_prev is set. A head is
// known by bin_head_, not by its link_prev, which is left stale: popping a head then writes
// nothing to the next block.
FDNC_HOT_INLINE void IovaHeap::remove_free(uint32_t n, unsigned bin) {
    const uint32_t next = nodes_[n].link_next;
    if (bin_head_[bin] != n) {
        const uint32_t prev = nodes_[n].link_prev;
        nodes_[prev].link_next = next;
        nodes_[next].link_prev = prev;  // node 0 when n is the last
        return;
    }
    pop_head(bin, next);
}

// The head of list `bin` leaves it; `next` is the new head.
FDNC_HOT_INLINE void IovaHeap::pop_head(unsigned bin, uint32_t next) {
    bin_head_[bin] = next;
    const unsigned fl = bin / kSlCount;
    const uint32_t row = sl_bitmap_[fl] & ~(uint32_t{next == kNil} << (bin % kSlCount));
    const uint32_t rows = fl_bitmap_ & ~(uint32_t{row == 0} << fl);
    sl_bitmap_[fl] = row;
    fl_bitmap_ = rows;
}

// Free block `with` takes free block old's place in list `bin` (old leaves it).
FDNC_HOT_INLINE void IovaHeap::replace_free(uint32_t old, uint32_t with, unsigned bin) {
    Node* const nodes = nodes_.data();
    const uint32_t prev = nodes[old].link_prev, next = nodes[old].link_next;
    nodes[with].link_prev = prev;  // stale, like old's, when old is the head
    nodes[with].link_next = next;
    if (bin_head_[bin] == old)
        bin_head_[bin] = with;
    else
        nodes[prev].link_next = with;
    nodes[next].link_prev = with;  // node 0 when old was the last
}

// Free block n grew or shrank from `old_units` to `units`: it changes lists only if its class did.
FDNC_HOT_INLINE void IovaHeap::resize_free(uint32_t n, uint32_t old_units, uint32_t units) {
    const unsigned bin = bin_of(old_units);
    if (bin_of(units) == bin)
        return;
    remove_free(n, bin);
    insert_free<true>(n, units);
}

// Takes [first, first + units) out of free block n (already off its list): the front padding
// and the tail stay free blocks of their own. Returns the live node.
template <bool kMaybeTight>
FDNC_HOT_INLINE uint32_t IovaHeap::carve(uint32_t n, uint32_t first, uint32_t units) {
    uint32_t live = n;
    if (first != page(n)) {
        live = new_node();  // may move nodes_: no references across it
        nodes_[live] = make_node(first, nodes_[n].next, live_mark(n), kNil);
        nodes_[n].next = live;
        insert_free<kMaybeTight>(n, first - page(n));
    } else {
        nodes_[n].link_prev = live_mark(kNil);  // n was free, so the block below it is live
    }
    const uint32_t end = first + units;
    const uint32_t after = nodes_[live].next;
    uint32_t tail = kNil;  // the block above was above a free block (n); now above the tail, if any
    if (end != page(after)) {
        tail = new_node();
        nodes_[tail] = make_node(end, after, kNil, kNil);
        nodes_[live].next = tail;
        insert_free<kMaybeTight>(tail, page(after) - end);
    }
    nodes_[after].link_prev = live_mark(tail);
    return live;
}

// Turns [first, first + units) of free block n (in list `bin`) into a live range; returns its node.
template <bool kMaybeTight>
FDNC_HOT_INLINE uint32_t IovaHeap::take(uint32_t n, unsigned bin, uint32_t first, uint32_t units) {
    const uint32_t end = first + units;
    const uint32_t after = nodes_[n].next;
    const uint32_t hi = page(after);
    uint32_t live = n;
    if (first == page(n) && end != hi && bin_of(hi - end) == bin) {
        // The rest stays in n's size class (a big block): n becomes the live range where it is
        // and a new node for the rest takes n's list place.
        const uint32_t rest = new_node();
        nodes_[rest].page = end;
        nodes_[rest].next = after;
        replace_free(n, rest, bin);
        nodes_[n].next = rest;
        nodes_[n].link_prev = live_mark(kNil);
        nodes_[after].link_prev = live_mark(rest);
    } else {
        remove_free(n, bin);
        live = carve<kMaybeTight>(n, first, units);
    }
    ++live_ranges_;
    live_units_ += units;
    peak_live_units_ = std::max(peak_live_units_, live_units_);
    return live;
}

// take() for the short path: n is the head of list `bin`, the range starts at n's first unit and
// the heap is not nearly full, so carve() reduces to three cases and writes only what changes.
FDNC_HOT_INLINE uint32_t IovaHeap::take_head(uint32_t n, unsigned bin, uint32_t units) {
    Node* nodes = nodes_.data();
    const uint32_t first = nodes[n].page;
    const uint32_t after = nodes[n].next;
    const uint32_t hi = nodes[after].page;
    const uint32_t end = first + units;
    const uint32_t live = n;
    if (end == hi) {  // exact fit: n becomes the live range
        pop_head(bin, nodes[n].link_next);
        nodes[n].link_prev = live_mark(kNil);  // n was free, so the block below is not
        nodes[after].link_prev = live_mark(kNil);
    } else if (bin_of(hi - end) == bin) {
        // The rest stays in n's class: n becomes the live range where it is, and a new node for
        // the rest takes n's place at the head of the list.
        const uint32_t rest = new_node();
        nodes = nodes_.data();  // new_node may have grown the pool
        const uint32_t second = nodes[n].link_next;
        nodes[rest] = make_node(end, after, kNil, second);
        nodes[second].link_prev = rest;  // node 0 when n was alone
        bin_head_[bin] = rest;
        nodes[n].next = rest;
        nodes[n].link_prev = live_mark(kNil);
        nodes[after].link_prev = live_mark(rest);
    } else {  // n becomes the live range, the rest a new free block above it
        pop_head(bin, nodes[n].link_next);
        nodes[n].link_prev = live_mark(kNil);
        const uint32_t tail = new_node();
        nodes = nodes_.data();
        nodes[tail] = make_node(end, after, kNil, kNil);
        nodes[after].link_prev = live_mark(tail);
        nodes[n].next = tail;
        insert_free<false>(tail, hi - end);
    }
    ++live_ranges_;
    live_units_ += units;
    peak_live_units_ = std::max(peak_live_units_, live_units_);
    return live;
}

// ---- alloc / free --------------------------------------------------------------------------

FDNC_HOT_INLINE uint32_t IovaHeap::alloc_block(uint64_t size, uint64_t align) {
    // size - 1 wraps for size 0; one branch for every invalid request.
    const unsigned shift = unit_shift_;
    // align ^ (align - 1) exceeds align - 1 exactly for powers of two.
    if ((size - 1 >= this->size()) | ((align ^ (align - 1)) <= align - 1)) [[unlikely]] {
        ++failed_allocs_;
        return kNil;
    }
    const uint32_t units = static_cast<uint32_t>(((size - 1) >> shift) + 1);
    const uint64_t mask = (align - 1) >> shift;  // 0 for alignments up to the unit
    uint32_t live = kNil;
    if (mask == 0 && !nearly_full()) {
        // The common case, kept short: the head of the request's own class if it is long enough
        // (below 32 units always: an exact fit), else the head of the first non-empty class
        // whose every block is.
        const unsigned exact = bin_of(units);
        const uint32_t head = bin_head_[exact];
        const bool exact_hit = head != kNil && (units < kSlCount || block_units(head) >= units);
        if (const unsigned bin = exact_hit ? exact : first_bin_from(bin_round_up(units));
            bin != kBinCount) {
            live = take_head(bin_head_[bin], bin, units);
        }
    }
    if (live == kNil)
        live = alloc_slow(units, mask);
    if (live == kNil)
        ++failed_allocs_;
    return live;
}

std::optional<IovaHeap::Allocation> IovaHeap::allocate(uint64_t size, uint64_t align) {
    const uint32_t n = alloc_block(size, align);
    if (n == kNil)
        return std::nullopt;
    if (indexed_) [[unlikely]]  // the by-address API was used too: keep its index whole
        hash_insert(n);
    return Allocation{(base_unit_ + page(n)) << unit_shift_, n};
}

std::optional<uint64_t> IovaHeap::alloc(uint64_t size, uint64_t align) {
    if (!indexed_) [[unlikely]]
        build_index();
    const uint32_t n = alloc_block(size, align);
    if (n == kNil)
        return std::nullopt;
    hash_insert(n);
    return (base_unit_ + page(n)) << unit_shift_;
}

// Aligned requests, a nearly full heap, and whatever the short path did not find: the probing
// steps (1)-(4) of the header. Returns the live node, or kNil.
uint32_t IovaHeap::alloc_slow(uint32_t units, uint64_t mask) {
    // Where block n can hold the request: its first aligned unit, or kNoUnit.
    auto fit = [&](uint32_t n) -> uint32_t {
        const uint64_t first = align_up(page(n), mask);
        return first + units <= page(nodes_[n].next) ? static_cast<uint32_t>(first) : kNoUnit;
    };
    const unsigned exact = bin_of(units);
    const unsigned guaranteed = bin_round_up(uint64_t{units} + mask);
    // (1) The request's own class: its head, or up to kMaxProbes blocks when nearly full.
    unsigned bin = first_bin_from(exact);
    if (bin == exact) {
        const unsigned limit = nearly_full() ? kMaxProbes : 1;
        unsigned probes = 0;
        for (uint32_t n = bin_head_[bin]; n != kNil && probes < limit;
             n = nodes_[n].link_next, ++probes) {
            if (const uint32_t first = fit(n); first != kNoUnit)
                return take<true>(n, bin, first, units);
        }
        bin = first_bin_from(bin + 1);
    }
    // (2) Aligned and nearly full: the heads of a few classes below the guaranteed one (most fit
    // with some padding), which keeps the bigger blocks whole.
    const unsigned class_probes = mask != 0 && nearly_full() ? kMaxProbes : 0;
    for (unsigned probes = 0; bin < guaranteed && probes < class_probes; ++probes) {
        const uint32_t head = bin_head_[bin];
        if (const uint32_t first = fit(head); first != kNoUnit)
            return take<true>(head, bin, first, units);
        bin = first_bin_from(bin + 1);
    }
    // (3) Every block of the guaranteed class and above fits, alignment padding included.
    bin = first_bin_from(std::max(bin, guaranteed));
    if (bin != kBinCount) {
        const uint32_t head = bin_head_[bin];
        return take<true>(head, bin, static_cast<uint32_t>(align_up(page(head), mask)), units);
    }
    // (4) Nearly full: a bounded scan of the lists below the guaranteed class.
    unsigned lists = 0;
    for (bin = first_bin_from(exact); bin < guaranteed && lists < kMaxProbes;
         bin = first_bin_from(bin + 1), ++lists) {
        unsigned probes = 0;
        for (uint32_t n = bin_head_[bin]; n != kNil && probes < kMaxProbes;
             n = nodes_[n].link_next, ++probes) {
            if (const uint32_t first = fit(n); first != kNoUnit)
                return take<true>(n, bin, first, units);
        }
    }
    return kNil;
}

bool IovaHeap::alloc_at(uint64_t iova, uint64_t size) {
    const uint64_t unit_bytes = 1ull << unit_shift_;
    const uint32_t first = unit_of(iova);
    if (size == 0 || first == kNoUnit || size > (uint64_t{end_unit_} - first) * unit_bytes) {
        ++failed_allocs_;
        return false;
    }
    const uint32_t units = static_cast<uint32_t>((size + unit_bytes - 1) >> unit_shift_);
    // The one free block that contains the first unit must contain the whole range (free blocks
    // are never adjacent, so a range spanning two blocks crosses a live one).
    for (uint32_t rows = fl_bitmap_; rows != 0; rows &= rows - 1) {
        const unsigned fl = lowest_bit(rows);
        for (uint32_t bins = sl_bitmap_[fl]; bins != 0; bins &= bins - 1) {
            for (uint32_t n = bin_head_[fl * kSlCount + lowest_bit(bins)]; n != kNil;
                 n = nodes_[n].link_next) {
                const uint32_t lo = page(n), hi = page(nodes_[n].next);
                if (first < lo || first >= hi)
                    continue;
                if (uint64_t{first} + units > hi) {
                    ++failed_allocs_;
                    return false;
                }
                const uint32_t live = take<true>(n, bin_of(hi - lo), first, units);
                if (indexed_)
                    hash_insert(live);
                return true;
            }
        }
    }
    ++failed_allocs_;  // the first unit is live
    return false;
}

bool IovaHeap::bad_free() {
    ++bad_frees_;
    assert(!strict_ && "IovaHeap::free of an address that is not a live allocation");
    return false;
}

// A handle names a live block that starts at its iova; anything else (forged, already released,
// from another heap) is no block. Node 0 and pooled nodes never pass (kNoUnit, kPooled).
FDNC_HOT_INLINE uint32_t IovaHeap::live_block(Allocation a) const {
    const uint32_t n = a.block;
    if (n - 1 >= nodes_.size() - 1 || nodes_[n].page != unit_of(a.iova) ||
        !(nodes_[n].link_prev & kLiveBit)) [[unlikely]]  // n - 1 wraps for node 0
        return kNil;
    return n;
}

void IovaHeap::release(Allocation a) {
    const uint32_t n = live_block(a);
    if (n == kNil) [[unlikely]] {
        bad_free();
        return;
    }
    if (indexed_) [[unlikely]]
        hash_unlink(n, page(n));
    free_block(n, page(n));
}

uint64_t IovaHeap::allocation_size(Allocation a) const {
    const uint32_t n = live_block(a);
    return n == kNil ? 0 : uint64_t{block_units(n)} << unit_shift_;
}

void IovaHeap::hash_unlink(uint32_t n, uint32_t unit) {
    for (uint32_t* link = &buckets_[bucket_of(unit)];; link = &nodes_[*link].link_next) {
        if (*link == n) {
            *link = nodes_[n].link_next;
            return;
        }
    }
}

void IovaHeap::free(uint64_t iova) {
    if (!indexed_) [[unlikely]]
        build_index();
    // One walk of the hash chain both finds the node and unlinks it.
    const uint32_t unit = unit_of(iova);
    if (unit == kNoUnit) {
        bad_free();
        return;
    }
    // The first two nodes of the chain are compared without a branch (at load 1/2-1 a chain of
    // two is common, and a branch on which one holds the unit mispredicts); longer chains are
    // walked. page(kNil) is kNoUnit, never a unit, and its link_next stays kNil.
    Node* const nodes = nodes_.data();
    uint32_t* const head = &buckets_[bucket_of(unit)];
    const uint32_t first = *head;
    // All ones when the first node holds the unit: masks, because GCC turns ?: into a branch.
    const uint32_t hit = 0u - uint32_t{nodes[first].page == unit};
    uint32_t n = (first & hit) | (nodes[first].link_next & ~hit);
    if (nodes[n].page == unit) [[likely]] {
        // Unlinks n without a branch: when n is first, the second store rewrites n's own link.
        const uint32_t after = nodes[n].link_next;
        *head = (after & hit) | (first & ~hit);
        nodes[first].link_next = after;
    } else {
        uint32_t* link = &nodes[n].link_next;  // n is the second node (or kNil)
        if (n == kNil) {
            bad_free();
            return;
        }
        n = *link;
        while (nodes[n].page != unit) {
            if (n == kNil) {
                bad_free();
                return;
            }
            link = &nodes[n].link_next;
            n = *link;
        }
        *link = nodes[n].link_next;
    }
    free_block(n, unit);
}

// Live block n (starting at `unit`, out of the address index if there is one) becomes free.
FDNC_HOT_INLINE void IovaHeap::free_block(uint32_t n, uint32_t unit) {
    --live_ranges_;

    // Immediate coalescing: a free block never has a free neighbour. The merged block keeps the
    // lower node (the free block below, else n: the block below n is not known, nor needed).
    const uint32_t below = free_below(n);  // kNil when the block below is live
    const uint32_t next = nodes_[n].next;
    const uint32_t hi = page(next);
    live_units_ -= hi - unit;
    const bool next_free = is_free(next);  // the sentinel is never free
    if (below != kNil) {
        const uint32_t lo = page(below);
        uint32_t after = next, end = hi;
        if (next_free) {
            after = nodes_[next].next;
            end = page(after);
            remove_free(next, bin_of(end - hi));
            release_node(next);
        }
        nodes_[below].next = after;
        nodes_[after].link_prev = live_mark(below);
        release_node(n);
        resize_free(below, unit - lo, end - lo);
    } else if (next_free) {
        // n takes over the free block above: its list place if the class stays, else a new one.
        const uint32_t after = nodes_[next].next;
        const uint32_t end = page(after);
        const unsigned bin = bin_of(end - hi);
        nodes_[n].next = after;
        nodes_[after].link_prev = live_mark(n);
        if (bin_of(end - unit) == bin) {
            replace_free(next, n, bin);
        } else {
            remove_free(next, bin);
            insert_free<true>(n, end - unit);
        }
        release_node(next);
    } else {
        nodes_[next].link_prev = live_mark(n);
        insert_free<true>(n, hi - unit);
    }
}

uint64_t IovaHeap::allocation_size(uint64_t iova) const {
    const uint32_t n = find_live(iova);
    return n == kNil ? 0 : uint64_t{block_units(n)} << unit_shift_;
}

IovaHeap::Stats IovaHeap::stats() const {
    Stats s;
    s.live_ranges = live_ranges_;
    s.live_bytes = live_units_ << unit_shift_;
    s.free_bytes = (end_unit_ - live_units_) << unit_shift_;
    s.peak_live_bytes = peak_live_units_ << unit_shift_;
    s.failed_allocs = failed_allocs_;
    s.bad_frees = bad_frees_;
    s.address_index = indexed_;
    // The largest block is in the highest non-empty bin (bins are ordered by size).
    if (fl_bitmap_ != 0) {
        const unsigned fl = msb(fl_bitmap_);
        const unsigned bin = fl * kSlCount + msb(sl_bitmap_[fl]);
        uint64_t largest = 0;
        for (uint32_t n = bin_head_[bin]; n != kNil; n = nodes_[n].link_next)
            largest = std::max<uint64_t>(largest, block_units(n));
        s.largest_free = largest << unit_shift_;
    }
    return s;
}

bool IovaHeap::check_invariants() const {
    // Address chain: from the block at unit 0 upwards, contiguous, no two free blocks adjacent,
    // each live block naming the free block below it.
    uint64_t blocks = 0, free_blocks = 0, live = 0, live_units = 0;
    if (page(first_) != 0 || (end_unit_ == 0) != (first_ == sentinel_))
        return false;
    uint32_t below = kNil;  // the block below n when it is free
    for (uint32_t n = first_; n != sentinel_; n = nodes_[n].next) {
        const uint32_t after = nodes_[n].next;
        if (after == kNil || page(after) <= page(n) || ++blocks > nodes_.size())
            return false;
        if (is_free(n)) {
            if (below != kNil || nodes_[n].link_prev == kPooled)
                return false;
            ++free_blocks;
            below = n;
            continue;
        }
        if (indexed_ && find_live((base_unit_ + page(n)) << unit_shift_) != n)
            return false;
        if (nodes_[n].link_prev != live_mark(below))
            return false;
        below = kNil;
        ++live;
        live_units += block_units(n);
    }
    if (nodes_[kNil].page != kNoUnit || nodes_[kNil].link_next != kNil)
        return false;
    if (live != live_ranges_ || live_units != live_units_ || nodes_[sentinel_].link_prev != live_mark(below))
        return false;
    // Size-class lists and bitmaps.
    uint64_t listed = 0;
    for (unsigned bin = 0; bin < kBinCount; ++bin) {
        const bool bit = (sl_bitmap_[bin / kSlCount] >> (bin % kSlCount)) & 1;
        const bool row = (fl_bitmap_ >> (bin / kSlCount)) & 1;
        if (bit != (bin_head_[bin] != kNil) || (bit && !row))
            return false;
        uint32_t prev = kNil;
        for (uint32_t f = bin_head_[bin]; f != kNil; f = nodes_[f].link_next) {
            // A head's link_prev is stale (see remove_free), but never a live marker.
            if (!is_free(f) || bin_of(block_units(f)) != bin ||
                (prev != kNil && nodes_[f].link_prev != prev))
                return false;
            prev = f;
            ++listed;
        }
    }
    for (unsigned fl = 0; fl < kFlCount; ++fl) {
        if (((fl_bitmap_ >> fl) & 1) != (sl_bitmap_[fl] != 0))
            return false;
    }
    return listed == free_blocks;
}

// ---- iova -> live node hash ----------------------------------------------------------------

FDNC_HOT_INLINE size_t IovaHeap::bucket_of(uint32_t unit) const {
    return static_cast<size_t>((unit * kHashMul) >> bucket_shift_);
}

uint32_t IovaHeap::find_live(uint64_t iova) const {
    const uint32_t unit = unit_of(iova);
    if (unit == kNoUnit)
        return kNil;
    if (!indexed_) {
        // Only the handle API has been used, so there is no index: walk the blocks (O(blocks)).
        for (uint32_t n = first_; n != sentinel_ && page(n) <= unit; n = nodes_[n].next) {
            if (page(n) == unit)
                return is_free(n) ? kNil : n;
        }
        return kNil;
    }
    for (uint32_t n = buckets_[bucket_of(unit)]; n != kNil; n = nodes_[n].link_next) {
        if (page(n) == unit)  // chains hold live nodes only
            return n;
    }
    return kNil;
}

// Called after take() counted n among the live ranges.
FDNC_HOT_INLINE void IovaHeap::hash_insert(uint32_t n) {
    if (live_ranges_ > hash_limit_)
        hash_grow();
    uint32_t& head = buckets_[bucket_of(page(n))];
    nodes_[n].link_next = head;
    head = n;
}

// The first by-address call: index every live block (O(blocks), once).
[[gnu::noinline]] void IovaHeap::build_index() {
    indexed_ = true;
    unsigned bits = kInitialBucketBits;
    while (hash_limit(size_t{1} << bits) < live_ranges_)
        ++bits;
    buckets_.assign(size_t{1} << bits, kNil);
    bucket_shift_ = 32 - bits;
    hash_limit_ = hash_limit(buckets_.size());
    for (uint32_t n = first_; n != sentinel_; n = nodes_[n].next) {
        if (!is_free(n)) {
            uint32_t& head = buckets_[bucket_of(page(n))];
            nodes_[n].link_next = head;
            head = n;
        }
    }
}

void IovaHeap::hash_grow() {
    std::vector<uint32_t> old(buckets_.size() * 2, kNil);
    old.swap(buckets_);
    --bucket_shift_;
    hash_limit_ = hash_limit(buckets_.size());
    for (uint32_t chain : old) {
        while (chain != kNil) {
            const uint32_t next = nodes_[chain].link_next;
            uint32_t& head = buckets_[bucket_of(page(chain))];
            nodes_[chain].link_next = head;
            head = chain;
            chain = next;
        }
    }
}

}  // namespace fdnc
