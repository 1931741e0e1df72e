#include "guest_alloc/iova_heap.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace fdnc {

namespace {

constexpr uint64_t kMaxPage = 1ull << 52;  // 2^64 bytes in pages
constexpr uint64_t kHashMul = 0x9E3779B97F4A7C15ull;
constexpr unsigned kInitialBucketBits = 6;

}  // namespace

// The hot path is a handful of tiny helpers; make sure they fold into alloc()/free().
#define FDNC_HOT_INLINE [[gnu::always_inline]] inline

namespace {

}  // namespace

IovaHeap::IovaHeap(uint64_t start, uint64_t size) {
    std::fill(std::begin(bin_head_), std::end(bin_head_), kNil);
    start_page_ = (start >> kPageShift) + ((start & (kPageSize - 1)) != 0 ? 1 : 0);
    const bool overflows = size > ~0ull - start;
    end_page_ = overflows ? kMaxPage : (start + size) >> kPageShift;
    if (end_page_ < start_page_)
        end_page_ = start_page_;

    buckets_.assign(size_t{1} << kInitialBucketBits, kNil);
    bucket_shift_ = 64 - kInitialBucketBits;
    nodes_.reserve(64);

    sentinel_ = new_node();
    nodes_[sentinel_].page_flags = end_page_;  // never free, so never merged
    if (end_page_ > start_page_) {
        const uint32_t n = new_node();
        nodes_[n].page_flags = start_page_;
        nodes_[n].phys_next = sentinel_;
        nodes_[sentinel_].phys_prev = n;
        insert_free(n);
    }
}

void IovaHeap::reserve(uint32_t live_ranges) {
    // Each live range can have one free block beside it.
    nodes_.reserve(size_t{2} * live_ranges + 2);
    while (buckets_.size() < live_ranges)
        hash_grow();
}

// ---- size classes --------------------------------------------------------------------------

FDNC_HOT_INLINE unsigned IovaHeap::bin_of(uint64_t pages) {
    if (pages < kSlCount)
        return static_cast<unsigned>(pages);
    const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(pages));
    const unsigned sl = static_cast<unsigned>(pages >> (msb - kSlBits)) & (kSlCount - 1);
    return (msb - (kSlBits - 1)) * kSlCount + sl;
}

FDNC_HOT_INLINE unsigned IovaHeap::bin_round_up(uint64_t pages) {
    if (pages >= kMaxPage)
        return kBinCount;
    if (pages >= kSlCount) {
        const unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(pages));
        pages += (1ull << (msb - kSlBits)) - 1;
    }
    return bin_of(pages);
}

FDNC_HOT_INLINE unsigned IovaHeap::first_bin_from(unsigned bin) const {
    if (bin >= kBinCount)
        return kBinCount;
    unsigned fl = bin / kSlCount;
    const uint32_t row = sl_bitmap_[fl] & (~0u << (bin % kSlCount));
    if (row != 0)
        return fl * kSlCount + static_cast<unsigned>(std::countr_zero(row));
    if (fl + 1 >= kFlCount)
        return kBinCount;
    const uint64_t rows = fl_bitmap_ & (~0ull << (fl + 1));
    if (rows == 0)
        return kBinCount;
    fl = static_cast<unsigned>(std::countr_zero(rows));
    return fl * kSlCount + static_cast<unsigned>(std::countr_zero(sl_bitmap_[fl]));
}

// ---- node pool and free lists --------------------------------------------------------------

FDNC_HOT_INLINE uint32_t IovaHeap::new_node() {
    if (pool_free_ != kNil) {
        const uint32_t n = pool_free_;
        pool_free_ = nodes_[n].link_next;
        return n;
    }
    nodes_.push_back(Node{0, kNil, kNil, kNil, kNil});
    return static_cast<uint32_t>(nodes_.size() - 1);
}

FDNC_HOT_INLINE void IovaHeap::release_node(uint32_t n) {
    nodes_[n].link_next = pool_free_;
    pool_free_ = n;
}

FDNC_HOT_INLINE void IovaHeap::insert_free(uint32_t n) {
    Node& node = nodes_[n];
    node.page_flags |= kFreeFlag;
    const unsigned bin = bin_of(block_pages(n));
    const uint32_t head = bin_head_[bin];
    if (head != kNil && nodes_[head].page_flags < node.page_flags) {
        // Lower addresses first (one step of address ordering): allocations gather at the low
        // end and high blocks stay whole, as in address-ordered best fit.
        const uint32_t second = nodes_[head].link_next;
        node.link_prev = head;
        node.link_next = second;
        if (second != kNil)
            nodes_[second].link_prev = n;
        nodes_[head].link_next = n;
        return;
    }
    node.link_prev = kNil;
    node.link_next = head;
    if (head != kNil)
        nodes_[head].link_prev = n;
    bin_head_[bin] = n;
    sl_bitmap_[bin / kSlCount] |= 1u << (bin % kSlCount);
    fl_bitmap_ |= 1ull << (bin / kSlCount);
}

FDNC_HOT_INLINE void IovaHeap::remove_free(uint32_t n) {
    Node& node = nodes_[n];
    if (node.link_next != kNil)
        nodes_[node.link_next].link_prev = node.link_prev;
    if (node.link_prev != kNil) {
        // Not the head: the list stays non-empty, so the bin (and the neighbour read its size
        // needs) is not needed.
        nodes_[node.link_prev].link_next = node.link_next;
    } else {
        const unsigned bin = bin_of(block_pages(n));
        bin_head_[bin] = node.link_next;
        if (node.link_next == kNil) {
            const unsigned fl = bin / kSlCount;
            sl_bitmap_[fl] &= ~(1u << (bin % kSlCount));
            if (sl_bitmap_[fl] == 0)
                fl_bitmap_ &= ~(1ull << fl);
        }
    }
    node.page_flags &= ~kFreeFlag;
}

// Takes [first_page, first_page + pages) out of free block n (already off its list): the front
// padding and the tail stay free blocks of their own. Returns the live node.
FDNC_HOT_INLINE uint32_t IovaHeap::carve(uint32_t n, uint64_t first_page, uint64_t pages) {
    uint32_t live = n;
    if (first_page != page(n)) {
        live = new_node();
        Node& front = nodes_[n];
        Node& mid = nodes_[live];
        mid.page_flags = first_page;
        mid.phys_prev = n;
        mid.phys_next = front.phys_next;
        nodes_[front.phys_next].phys_prev = live;
        front.phys_next = live;
        insert_free(n);
    }
    const uint64_t end = first_page + pages;
    if (end != page(nodes_[live].phys_next)) {
        const uint32_t tail = new_node();
        Node& mid = nodes_[live];
        Node& t = nodes_[tail];
        t.page_flags = end;
        t.phys_prev = live;
        t.phys_next = mid.phys_next;
        nodes_[mid.phys_next].phys_prev = tail;
        mid.phys_next = tail;
        insert_free(tail);
    }
    return live;
}

// ---- alloc / free --------------------------------------------------------------------------

std::optional<uint64_t> IovaHeap::alloc(uint64_t size, uint64_t align) {
    if (size == 0 || align == 0 || (align & (align - 1)) != 0 || size > ~0ull - (kPageSize - 1)) {
        ++failed_allocs_;
        return std::nullopt;
    }
    const uint64_t pages = (size + kPageSize - 1) >> kPageShift;
    const uint64_t align_pages = align > kPageSize ? align >> kPageShift : 1;
    const uint64_t mask = align_pages - 1;

    auto fits = [&](uint32_t n, uint64_t& first) {
        first = (page(n) + mask) & ~mask;
        return first + pages <= page(nodes_[n].phys_next);
    };

    uint32_t found = kNil;
    uint64_t first = 0;
    const unsigned guaranteed = bin_round_up(pages + mask);
    // (1) Good fit: the classes below the guaranteed one may hold a block that fits (same class
    // as the request, or alignment padding smaller than the worst case). Checking a bounded
    // number of them first keeps big blocks whole, which is what keeps a nearly full heap usable.
    unsigned probes = 0;
    for (unsigned bin = first_bin_from(bin_of(pages)); bin < guaranteed && probes < kMaxProbes;
         bin = first_bin_from(bin + 1)) {
        for (uint32_t n = bin_head_[bin]; n != kNil && probes < kMaxProbes;
             n = nodes_[n].link_next, ++probes) {
            if (fits(n, first)) {
                found = n;
                break;
            }
        }
        if (found != kNil)
            break;
    }
    // (2) Every block of the guaranteed class and above fits, alignment padding included.
    if (found == kNil) {
        const unsigned gbin = first_bin_from(guaranteed);
        if (gbin != kBinCount) {
            found = bin_head_[gbin];
            first = (page(found) + mask) & ~mask;
        }
    }
    if (found == kNil) {
        ++failed_allocs_;
        return std::nullopt;
    }

    remove_free(found);
    const uint32_t live = carve(found, first, pages);
    hash_insert(live);
    ++live_ranges_;
    live_pages_ += pages;
    peak_live_pages_ = std::max(peak_live_pages_, live_pages_);
    return first << kPageShift;
}

bool IovaHeap::alloc_at(uint64_t iova, uint64_t size) {
    if (size == 0 || (iova & (kPageSize - 1)) != 0 || size > ~0ull - (kPageSize - 1)) {
        ++failed_allocs_;
        return false;
    }
    const uint64_t first = iova >> kPageShift;
    const uint64_t pages = (size + kPageSize - 1) >> kPageShift;
    if (first < start_page_ || first >= end_page_ || pages > end_page_ - first) {
        ++failed_allocs_;
        return false;
    }
    // The one free block that contains the first page must contain the whole range (free blocks
    // are never adjacent, so a range spanning two blocks crosses a live one).
    for (unsigned fl = 0; fl < kFlCount; ++fl) {
        if (((fl_bitmap_ >> fl) & 1) == 0)
            continue;
        for (unsigned sl = 0; sl < kSlCount; ++sl) {
            for (uint32_t n = bin_head_[fl * kSlCount + sl]; n != kNil; n = nodes_[n].link_next) {
                const uint64_t lo = page(n), hi = page(nodes_[n].phys_next);
                if (first < lo || first >= hi)
                    continue;
                if (first + pages > hi) {
                    ++failed_allocs_;
                    return false;
                }
                remove_free(n);
                const uint32_t live = carve(n, first, pages);
                hash_insert(live);
                ++live_ranges_;
                live_pages_ += pages;
                peak_live_pages_ = std::max(peak_live_pages_, live_pages_);
                return true;
            }
        }
    }
    ++failed_allocs_;  // the first page is live
    return false;
}

bool IovaHeap::bad_free() {
    ++bad_frees_;
    assert(!strict_ && "IovaHeap::free of an address that is not a live allocation");
    return false;
}

void IovaHeap::free(uint64_t iova) {
    // One walk of the hash chain both finds the node and unlinks it.
    uint32_t* link = nullptr;
    const uint64_t pg = iova >> kPageShift;
    if ((iova & (kPageSize - 1)) == 0 && pg >= start_page_ && pg < end_page_) {
        link = &buckets_[bucket_of(pg)];
        while (*link != kNil && nodes_[*link].page_flags != pg)
            link = &nodes_[*link].link_next;
    }
    if (link == nullptr || *link == kNil) {
        bad_free();
        return;
    }
    const uint32_t n = *link;
    *link = nodes_[n].link_next;
    --live_ranges_;
    live_pages_ -= block_pages(n);

    // Immediate coalescing: a free block never has a free neighbour.
    uint32_t block = n;
    const uint32_t prev = nodes_[n].phys_prev;
    if (prev != kNil && is_free(prev)) {
        remove_free(prev);
        const uint32_t next = nodes_[n].phys_next;
        nodes_[prev].phys_next = next;
        nodes_[next].phys_prev = prev;
        release_node(n);
        block = prev;
    }
    const uint32_t next = nodes_[block].phys_next;
    if (is_free(next)) {  // the sentinel is never free
        remove_free(next);
        const uint32_t after = nodes_[next].phys_next;
        nodes_[block].phys_next = after;
        nodes_[after].phys_prev = block;
        release_node(next);
    }
    insert_free(block);
}

uint64_t IovaHeap::allocation_size(uint64_t iova) const {
    const uint32_t n = find_live(iova);
    return n == kNil ? 0 : block_pages(n) << kPageShift;
}

IovaHeap::Stats IovaHeap::stats() const {
    Stats s;
    s.live_ranges = live_ranges_;
    s.live_bytes = live_pages_ << kPageShift;
    s.free_bytes = ((end_page_ - start_page_) - live_pages_) << kPageShift;
    s.peak_live_bytes = peak_live_pages_ << kPageShift;
    s.failed_allocs = failed_allocs_;
    s.bad_frees = bad_frees_;
    // The largest block is in the highest non-empty bin (bins are ordered by size).
    if (fl_bitmap_ != 0) {
        const unsigned fl = 63 - static_cast<unsigned>(std::countl_zero(fl_bitmap_));
        const unsigned bin =
            fl * kSlCount + 31 - static_cast<unsigned>(std::countl_zero(sl_bitmap_[fl]));
        uint64_t largest = 0;
        for (uint32_t n = bin_head_[bin]; n != kNil; n = nodes_[n].link_next)
            largest = std::max(largest, block_pages(n));
        s.largest_free = largest << kPageShift;
    }
    return s;
}

bool IovaHeap::check_invariants() const {
    // Physical chain: from the sentinel backwards, contiguous, no two free blocks adjacent.
    uint64_t blocks = 0, free_blocks = 0, live = 0, live_pages = 0;
    uint32_t n = nodes_[sentinel_].phys_prev;
    uint32_t after = sentinel_;
    while (n != kNil) {
        if (nodes_[n].phys_next != after || page(n) >= page(after))
            return false;
        if (is_free(n)) {
            if (is_free(after))
                return false;
            ++free_blocks;
        } else {
            if (find_live(page(n) << kPageShift) != n)
                return false;
            ++live;
            live_pages += block_pages(n);
        }
        ++blocks;
        after = n;
        n = nodes_[n].phys_prev;
    }
    if (blocks != 0 && page(after) != start_page_)
        return false;
    if (live != live_ranges_ || live_pages != live_pages_)
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
            if (!is_free(f) || bin_of(block_pages(f)) != bin || nodes_[f].link_prev != prev)
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

FDNC_HOT_INLINE size_t IovaHeap::bucket_of(uint64_t page) const {
    return static_cast<size_t>((page * kHashMul) >> bucket_shift_);
}

uint32_t IovaHeap::find_live(uint64_t iova) const {
    if ((iova & (kPageSize - 1)) != 0)
        return kNil;
    const uint64_t pg = iova >> kPageShift;
    if (pg < start_page_ || pg >= end_page_)
        return kNil;
    for (uint32_t n = buckets_[bucket_of(pg)]; n != kNil; n = nodes_[n].link_next) {
        if (nodes_[n].page_flags == pg)  // live nodes carry no free flag
            return n;
    }
    return kNil;
}

FDNC_HOT_INLINE void IovaHeap::hash_insert(uint32_t n) {
    if (live_ranges_ + 1 > buckets_.size())
        hash_grow();
    uint32_t& head = buckets_[bucket_of(page(n))];
    nodes_[n].link_next = head;
    head = n;
}

void IovaHeap::hash_grow() {
    std::vector<uint32_t> old(buckets_.size() * 2, kNil);
    old.swap(buckets_);
    --bucket_shift_;
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
