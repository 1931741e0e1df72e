// IovaQuarantine: a freed range is reused only after every fence it waits on has retired.
#include <catch2/catch.hpp>

#include <vector>

#include "guest_alloc/iova_quarantine.h"

using fdnc::FencePoint;
using fdnc::IovaHeap;
using fdnc::IovaQuarantine;
using fdnc::ParkStatus;

namespace {
constexpr uint64_t kStart = 0x1'0000'0000ull;
constexpr uint64_t kPage = 4096;
}  // namespace

TEST_CASE("A parked range stays allocated until its seqno retires", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(64 * 1024);
    REQUIRE(a);
    CHECK(q.park(*a, 0, 10) == ParkStatus::Parked);
    CHECK(q.quarantined_ranges() == 1);
    CHECK(q.quarantined_bytes() == 64 * 1024);
    CHECK(q.retire(0, 9) == 0);
    CHECK(heap.is_live(*a));
    CHECK(q.retire(0, 10) == 1);
    CHECK_FALSE(heap.is_live(*a));
    CHECK(q.quarantined_ranges() == 0);
    CHECK(q.quarantined_bytes() == 0);
}

TEST_CASE("Retire on one ring does not release ranges waiting on another", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(kPage), b = heap.alloc(kPage);
    REQUIRE(a);
    REQUIRE(b);
    q.park(*a, 1, 5);
    q.park(*b, 2, 5);
    CHECK(q.retire(2, 100) == 1);
    CHECK(heap.is_live(*a));
    CHECK_FALSE(heap.is_live(*b));
}

TEST_CASE("A range waiting on several rings returns only when all have retired", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(kPage);
    REQUIRE(a);
    const FencePoint points[] = {{0, 3}, {2, 70}, {5, 1}};
    CHECK(q.park(*a, points) == ParkStatus::Parked);
    CHECK(q.retire(2, 70) == 0);
    CHECK(q.retire(5, 1) == 0);
    CHECK(heap.is_live(*a));
    CHECK(q.retire(0, 3) == 1);
    CHECK_FALSE(heap.is_live(*a));
}

TEST_CASE("Out-of-order parks on a ring are released in seqno order", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    std::vector<uint64_t> r;
    for (int i = 0; i < 4; ++i)
        r.push_back(*heap.alloc(kPage));
    q.park(r[0], 0, 30);
    q.park(r[1], 0, 10);
    q.park(r[2], 0, 20);
    q.park(r[3], 0, 40);
    CHECK(q.retire(0, 15) == 1);
    CHECK_FALSE(heap.is_live(r[1]));
    CHECK(heap.is_live(r[2]));
    CHECK(q.retire(0, 30) == 2);
    CHECK(heap.is_live(r[3]));
    CHECK(q.quarantined_ranges() == 1);
}

TEST_CASE("Seqno comparison survives 32-bit wrap-around", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(kPage), b = heap.alloc(kPage);
    REQUIRE(a);
    REQUIRE(b);
    q.park(*a, 0, 0xfffffff0u);
    q.park(*b, 0, 5);  // after the wrap
    CHECK(q.retire(0, 0xfffffff8u) == 1);
    CHECK_FALSE(heap.is_live(*a));
    CHECK(heap.is_live(*b));
    CHECK(q.retire(0, 4) == 0);
    CHECK(q.retire(0, 5) == 1);
    CHECK_FALSE(heap.is_live(*b));
}

TEST_CASE("An out-of-order park across the wrap point is ordered correctly", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(kPage), b = heap.alloc(kPage);
    q.park(*a, 3, 2);            // after the wrap
    q.park(*b, 3, 0xfffffffeu);  // before the wrap, parked later
    CHECK(q.retire(3, 0xffffffffu) == 1);
    CHECK(heap.is_live(*a));
    CHECK_FALSE(heap.is_live(*b));
}

TEST_CASE("A park whose fence already retired releases at once", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    q.retire(0, 50);
    const auto a = heap.alloc(kPage);
    CHECK(q.park(*a, 0, 49) == ParkStatus::Released);
    CHECK_FALSE(heap.is_live(*a));
    const auto b = heap.alloc(kPage);
    CHECK(q.park(*b, {}) == ParkStatus::Released);
    CHECK_FALSE(heap.is_live(*b));
}

TEST_CASE("A stale retire report does not move a ring backwards", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    q.retire(0, 100);
    q.retire(0, 90);
    const auto a = heap.alloc(kPage);
    CHECK(q.park(*a, 0, 95) == ParkStatus::Released);
}

TEST_CASE("Parking a non-live, already parked or bad-ring range is refused", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    const auto a = heap.alloc(kPage);
    REQUIRE(a);
    CHECK(q.park(kStart + 64 * kPage, 0, 1) == ParkStatus::NotLive);
    CHECK(q.park(*a, IovaQuarantine::kMaxRings, 1) == ParkStatus::BadRing);
    CHECK(q.park(*a, 0, 1) == ParkStatus::Parked);
    CHECK(q.park(*a, 1, 1) == ParkStatus::AlreadyParked);
    CHECK(q.quarantined_ranges() == 1);
    CHECK(std::string(fdnc::what(ParkStatus::NotLive)).find("not a live") != std::string::npos);
}

TEST_CASE("Teardown returns every parked range to the heap", "[quarantine]") {
    IovaHeap heap(kStart, 1 << 20);
    IovaQuarantine q(heap);
    for (uint32_t i = 0; i < 10; ++i) {
        const auto a = heap.alloc(8 * kPage);
        REQUIRE(a);
        const FencePoint points[] = {{i % 3, 100 + i}, {7, i}};
        q.park(*a, points);
    }
    CHECK(q.release_all() == 10);
    CHECK(q.quarantined_ranges() == 0);
    CHECK(q.quarantined_bytes() == 0);
    CHECK(heap.stats().live_ranges == 0);
    CHECK(heap.stats().largest_free == 1 << 20);
    // Old waits are gone: later retires release nothing and the heap stays consistent.
    CHECK(q.retire(7, 1000) == 0);
    CHECK(heap.stats().bad_frees == 0);
}

TEST_CASE("Freed ranges are never handed out while still quarantined", "[quarantine]") {
    IovaHeap heap(kStart, 16 * kPage);
    IovaQuarantine q(heap);
    std::vector<uint64_t> all;
    while (auto a = heap.alloc(kPage))
        all.push_back(*a);
    for (size_t i = 0; i < all.size(); ++i)
        q.park(all[i], 0, uint32_t(i + 1));
    CHECK_FALSE(heap.alloc(kPage));
    q.retire(0, 1);
    CHECK(heap.alloc(kPage) == all[0]);
    CHECK_FALSE(heap.alloc(kPage));
}
