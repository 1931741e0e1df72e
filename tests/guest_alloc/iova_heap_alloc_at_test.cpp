// IovaHeap::alloc_at: reserving a caller-chosen range (replay at a capture's original addresses).
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "guest_alloc/iova_heap.h"

using fdnc::IovaHeap;

namespace {
constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint64_t kVaStart = 0x1'0000'0000ull;
}  // namespace

TEST_CASE("alloc_at reserves exactly the requested range", "[iova_heap][alloc_at]") {
    IovaHeap heap(kVaStart, 16 * MiB);
    REQUIRE(heap.alloc_at(kVaStart + 1 * MiB, 64 * KiB));
    CHECK(heap.is_live(kVaStart + 1 * MiB));
    CHECK(heap.allocation_size(kVaStart + 1 * MiB) == 64 * KiB);
    CHECK(heap.stats().free_bytes == 16 * MiB - 64 * KiB);
    CHECK(heap.check_invariants());
}

TEST_CASE("alloc_at refuses a range that overlaps a live allocation", "[iova_heap][alloc_at]") {
    IovaHeap heap(kVaStart, 16 * MiB);
    REQUIRE(heap.alloc_at(kVaStart + 1 * MiB, 64 * KiB));
    CHECK_FALSE(heap.alloc_at(kVaStart + 1 * MiB, 4 * KiB));                // same start
    CHECK_FALSE(heap.alloc_at(kVaStart + 1 * MiB + 60 * KiB, 8 * KiB));     // starts inside
    CHECK_FALSE(heap.alloc_at(kVaStart + 1 * MiB - 4 * KiB, 8 * KiB));      // runs into it
    CHECK(heap.alloc_at(kVaStart + 1 * MiB + 64 * KiB, 4 * KiB));           // just after: fine
    CHECK(heap.stats().failed_allocs == 3);
    CHECK(heap.check_invariants());
}

TEST_CASE("alloc_at refuses unaligned, empty and out-of-range requests", "[iova_heap][alloc_at]") {
    IovaHeap heap(kVaStart, 1 * MiB);
    CHECK_FALSE(heap.alloc_at(kVaStart + 1, 4 * KiB));
    CHECK_FALSE(heap.alloc_at(kVaStart, 0));
    CHECK_FALSE(heap.alloc_at(kVaStart - 4 * KiB, 8 * KiB));
    CHECK_FALSE(heap.alloc_at(kVaStart + 1 * MiB - 4 * KiB, 8 * KiB));
    CHECK(heap.stats().live_ranges == 0);
    CHECK(heap.check_invariants());
}

TEST_CASE("A range from alloc_at frees and coalesces like any allocation", "[iova_heap][alloc_at]") {
    IovaHeap heap(kVaStart, 4 * MiB);
    REQUIRE(heap.alloc_at(kVaStart + 2 * MiB, 4 * KiB));
    const auto a = heap.alloc(1 * MiB);
    REQUIRE(a);
    CHECK((*a + 1 * MiB <= kVaStart + 2 * MiB || *a >= kVaStart + 2 * MiB + 4 * KiB));
    heap.free(kVaStart + 2 * MiB);
    heap.free(*a);
    CHECK(heap.stats().largest_free == 4 * MiB);
    CHECK(heap.check_invariants());
}

TEST_CASE("alloc_at mixed with alloc keeps every range disjoint (seeded)", "[iova_heap][alloc_at]") {
    IovaHeap heap(kVaStart, 64 * MiB);
    std::mt19937_64 rng(7);
    struct R { uint64_t lo, hi; };
    std::vector<R> live;
    auto overlaps = [&](uint64_t lo, uint64_t hi) {
        for (const R& r : live)
            if (lo < r.hi && r.lo < hi) return true;
        return false;
    };
    for (int i = 0; i < 2000; ++i) {
        const uint64_t size = ((rng() % 64) + 1) * 4 * KiB;
        const int op = static_cast<int>(rng() % 3);
        if (op == 0 && !live.empty()) {
            const size_t k = rng() % live.size();
            heap.free(live[k].lo);
            live.erase(live.begin() + static_cast<long>(k));
        } else if (op == 1) {
            const uint64_t at = kVaStart + (rng() % (64 * MiB / (4 * KiB))) * 4 * KiB;
            const bool expect = at + size <= kVaStart + 64 * MiB && !overlaps(at, at + size);
            REQUIRE(heap.alloc_at(at, size) == expect);
            if (expect) live.push_back({at, at + size});
        } else if (auto a = heap.alloc(size)) {
            REQUIRE_FALSE(overlaps(*a, *a + size));
            live.push_back({*a, *a + size});
        }
    }
    CHECK(heap.stats().live_ranges == live.size());
    CHECK(heap.check_invariants());
}
