// Edge cases of IovaHeap (issue 3): sizes, exhaustion, alignment, bad frees.
#include <catch2/catch.hpp>

#include "guest_alloc/iova_heap.h"

using fdnc::IovaHeap;

namespace {
constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
constexpr uint64_t kVaStart = 0x1'0000'0000ull;  // PROTOCOL.md default va_start
}  // namespace

TEST_CASE("A fresh heap is one free block covering the whole range", "[iova_heap]") {
    IovaHeap heap(kVaStart, 4 * GiB);
    const auto s = heap.stats();
    CHECK(heap.start() == kVaStart);
    CHECK(heap.size() == 4 * GiB);
    CHECK(s.live_ranges == 0);
    CHECK(s.free_bytes == 4 * GiB);
    CHECK(s.largest_free == 4 * GiB);
}

TEST_CASE("Sizes are rounded up to whole 4 KiB pages", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    const auto a = heap.alloc(1);
    REQUIRE(a);
    CHECK(heap.allocation_size(*a) == 4 * KiB);
    const auto b = heap.alloc(4 * KiB + 1);
    REQUIRE(b);
    CHECK(heap.allocation_size(*b) == 8 * KiB);
    CHECK(heap.stats().live_bytes == 12 * KiB);
}

TEST_CASE("A zero-size request fails and is counted", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    CHECK_FALSE(heap.alloc(0));
    CHECK(heap.stats().failed_allocs == 1);
    CHECK(heap.stats().live_ranges == 0);
}

TEST_CASE("A request larger than the range or than 2^64 fails without wrapping", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    CHECK_FALSE(heap.alloc(1 * MiB + 1));
    CHECK_FALSE(heap.alloc(~0ull));
    CHECK_FALSE(heap.alloc(~0ull - 4095));
    CHECK(heap.stats().failed_allocs == 3);
    CHECK(heap.alloc(1 * MiB) == kVaStart);
}

TEST_CASE("A non power of two alignment is rejected", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    CHECK_FALSE(heap.alloc(4 * KiB, 3 * 4096));
    CHECK_FALSE(heap.alloc(4 * KiB, 0));
    CHECK(heap.stats().failed_allocs == 2);
}

TEST_CASE("Alignments below 4 KiB are raised to a page", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    const auto a = heap.alloc(100, 16);
    REQUIRE(a);
    CHECK(*a % (4 * KiB) == 0);
}

TEST_CASE("The heap fills exactly and then reports exhaustion", "[iova_heap]") {
    IovaHeap heap(kVaStart, 64 * KiB);
    for (int i = 0; i < 16; ++i)
        REQUIRE(heap.alloc(4 * KiB) == kVaStart + uint64_t(i) * 4 * KiB);
    CHECK_FALSE(heap.alloc(4 * KiB));
    const auto s = heap.stats();
    CHECK(s.free_bytes == 0);
    CHECK(s.largest_free == 0);
    CHECK(s.failed_allocs == 1);
    heap.free(kVaStart + 5 * 4 * KiB);
    CHECK(heap.alloc(4 * KiB) == kVaStart + 5 * 4 * KiB);
}

TEST_CASE("An alignment equal to the whole range returns the whole range", "[iova_heap]") {
    IovaHeap heap(4 * GiB, 4 * GiB);
    const auto a = heap.alloc(4 * GiB, 4 * GiB);
    REQUIRE(a);
    CHECK(*a == 4 * GiB);
    CHECK(heap.stats().free_bytes == 0);
    heap.free(*a);
    CHECK(heap.stats().largest_free == 4 * GiB);
}

TEST_CASE("A large alignment is honoured when the start is not aligned to it", "[iova_heap]") {
    IovaHeap heap(kVaStart + 4 * KiB, 4 * GiB);
    const auto a = heap.alloc(1 * GiB, 1 * GiB);
    REQUIRE(a);
    CHECK(*a % GiB == 0);
    CHECK(*a >= heap.start());
    CHECK(*a + GiB <= heap.start() + heap.size());
    // The front padding stays usable: no padding waste.
    const auto s = heap.stats();
    CHECK(s.live_bytes == 1 * GiB);
    CHECK(s.free_bytes == 3 * GiB);
    const auto tail = heap.alloc(2 * GiB + 4 * KiB);
    REQUIRE(tail);
    const auto pad = heap.alloc(1 * GiB - 4 * KiB);
    REQUIRE(pad);
    CHECK(heap.stats().free_bytes == 0);
    CHECK(*pad == heap.start());
}

TEST_CASE("An alignment that cannot fit in the range fails", "[iova_heap]") {
    IovaHeap heap(kVaStart + 4 * KiB, 1 * GiB);
    // The only 1 GiB-aligned address in range leaves less than 1 GiB after it.
    CHECK_FALSE(heap.alloc(1 * GiB, 1 * GiB));
    CHECK(heap.stats().failed_allocs == 1);
}

TEST_CASE("An unaligned start is rounded up to a page", "[iova_heap]") {
    IovaHeap heap(kVaStart + 100, 1 * MiB);
    CHECK(heap.start() == kVaStart + 4 * KiB);
    CHECK(heap.size() == 1 * MiB - 4 * KiB);
    CHECK(heap.alloc(4 * KiB) == kVaStart + 4 * KiB);
}

TEST_CASE("An empty range fails every allocation", "[iova_heap]") {
    IovaHeap heap(kVaStart, 100);
    CHECK(heap.size() == 0);
    CHECK_FALSE(heap.alloc(4 * KiB));
    CHECK(heap.stats().largest_free == 0);
}

TEST_CASE("A range reaching the top of the 64-bit space is clamped and usable", "[iova_heap]") {
    IovaHeap heap(~0ull - 1 * MiB + 1, 16 * MiB);
    CHECK(heap.size() == 1 * MiB);
    const auto a = heap.alloc(1 * MiB);
    REQUIRE(a);
    CHECK(*a == ~0ull - 1 * MiB + 1);
}

TEST_CASE("A 2^48-byte range serves allocations of sizes up to 2^47", "[iova_heap]") {
    IovaHeap heap(1ull << 48, 1ull << 48);
    const auto a = heap.alloc(1ull << 47, 1ull << 47);
    const auto b = heap.alloc(1ull << 46);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a % (1ull << 47) == 0);
    CHECK(heap.stats().live_bytes == (1ull << 47) + (1ull << 46));
}

TEST_CASE("A double free is counted and does not corrupt the heap", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    heap.set_strict(false);
    const auto a = heap.alloc(8 * KiB);
    const auto b = heap.alloc(8 * KiB);
    REQUIRE(a);
    REQUIRE(b);
    heap.free(*a);
    heap.free(*a);
    const auto s = heap.stats();
    CHECK(s.bad_frees == 1);
    CHECK(s.live_ranges == 1);
    CHECK(s.live_bytes == 8 * KiB);
    CHECK(heap.is_live(*b));
}

TEST_CASE("A free of a foreign or interior address is counted and ignored", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    heap.set_strict(false);
    const auto a = heap.alloc(64 * KiB);
    REQUIRE(a);
    heap.free(0);
    heap.free(*a + 4 * KiB);  // inside the allocation
    heap.free(*a + 1);        // not page aligned
    heap.free(kVaStart + 512 * KiB);  // inside the free block
    heap.free(kVaStart + 2 * MiB);    // outside the range
    const auto s = heap.stats();
    CHECK(s.bad_frees == 5);
    CHECK(s.live_ranges == 1);
    CHECK(heap.allocation_size(*a) == 64 * KiB);
}

TEST_CASE("Freeing everything coalesces back into one block", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    std::vector<uint64_t> live;
    while (auto a = heap.alloc(12 * KiB))
        live.push_back(*a);
    // Free in an interleaved order so both neighbour merges happen.
    for (size_t i = 0; i < live.size(); i += 2)
        heap.free(live[i]);
    for (size_t i = 1; i < live.size(); i += 2)
        heap.free(live[i]);
    const auto s = heap.stats();
    CHECK(s.live_ranges == 0);
    CHECK(s.largest_free == 1 * MiB);
    CHECK(heap.alloc(1 * MiB) == kVaStart);
}

TEST_CASE("Peak live bytes remember the high-water mark", "[iova_heap]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    const auto a = heap.alloc(256 * KiB);
    const auto b = heap.alloc(128 * KiB);
    REQUIRE(a);
    REQUIRE(b);
    heap.free(*a);
    heap.free(*b);
    CHECK(heap.stats().peak_live_bytes == 384 * KiB);
    CHECK(heap.stats().live_bytes == 0);
}

TEST_CASE("A tight fit below the guaranteed size class is still found", "[iova_heap]") {
    // Leave one hole of exactly 100 pages; a 100-page request must land in it even though the
    // rounded-up class search cannot see it.
    IovaHeap heap(kVaStart, 1 * MiB);
    const auto hole = heap.alloc(100 * 4 * KiB);
    const auto rest = heap.alloc(1 * MiB - 100 * 4 * KiB);
    REQUIRE(hole);
    REQUIRE(rest);
    heap.free(*hole);
    CHECK(heap.alloc(100 * 4 * KiB) == *hole);
}
