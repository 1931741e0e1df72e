// Randomized differential tests: IovaHeap against a std::map model of the live ranges.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <random>
#include <vector>

#include "guest_alloc/iova_heap.h"

using fdnc::IovaHeap;

namespace {

constexpr uint64_t kPage = 4096;

// The model: live ranges by start. The gaps between them are the heap's free blocks (the heap
// coalesces immediately, so each gap must be exactly one free block).
struct Model {
    uint64_t start, end;
    std::map<uint64_t, uint64_t> live;  // start -> bytes
    uint64_t peak = 0;

    uint64_t live_bytes() const {
        uint64_t sum = 0;
        for (const auto& [a, n] : live)
            sum += n;
        return sum;
    }
    uint64_t largest_gap() const {
        uint64_t cursor = start, best = 0;
        for (const auto& [a, n] : live) {
            best = std::max(best, a - cursor);
            cursor = a + n;
        }
        return std::max(best, end - cursor);
    }
    // The new range overlaps nothing and lies in range.
    bool fits(uint64_t a, uint64_t n) const {
        if (a < start || a + n > end)
            return false;
        auto next = live.lower_bound(a);
        if (next != live.end() && next->first < a + n)
            return false;
        if (next != live.begin() && std::prev(next)->first + std::prev(next)->second > a)
            return false;
        return true;
    }
};

void check_stats(const IovaHeap& heap, const Model& model) {
    REQUIRE(heap.check_invariants());
    const auto s = heap.stats();
    REQUIRE(s.live_ranges == model.live.size());
    REQUIRE(s.live_bytes == model.live_bytes());
    REQUIRE(s.free_bytes == (model.end - model.start) - model.live_bytes());
    REQUIRE(s.largest_free == model.largest_gap());
    REQUIRE(s.peak_live_bytes == model.peak);
}

uint64_t log_uniform(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {
    std::uniform_real_distribution<double> d(std::log2(double(lo)), std::log2(double(hi)));
    return uint64_t(std::exp2(d(rng)));
}

// One seeded run: random allocs (random sizes/alignments), random frees, bad frees.
void run_differential(uint64_t seed, uint64_t start, uint64_t size, int steps, uint64_t max_alloc) {
    std::mt19937_64 rng(seed);
    IovaHeap heap(start, size);
    heap.set_strict(false);
    Model model{heap.start(), heap.start() + heap.size(), {}, 0};
    std::vector<uint64_t> live;
    uint64_t bad_frees = 0;
    const uint64_t aligns[] = {kPage, kPage, kPage, 16 * kPage, 64 * kPage, 512 * kPage};

    for (int step = 0; step < steps; ++step) {
        const unsigned op = rng() % 16;
        if (op < 9 || live.empty()) {
            const uint64_t bytes = log_uniform(rng, 1, max_alloc);
            const uint64_t align = aligns[rng() % std::size(aligns)];
            const uint64_t rounded = (bytes + kPage - 1) / kPage * kPage;
            const auto a = heap.alloc(bytes, align);
            if (a) {
                REQUIRE(*a % align == 0);
                REQUIRE(model.fits(*a, rounded));
                REQUIRE(heap.allocation_size(*a) == rounded);
                model.live.emplace(*a, rounded);
                model.peak = std::max(model.peak, model.live_bytes());
                live.push_back(*a);
            } else {
                // Any free block at least one size class (1/32) above the padded request is
                // found, so a failure means no such block exists.
                const uint64_t need = rounded + align - kPage;
                REQUIRE(model.largest_gap() < need + need / 32 + kPage);
            }
        } else if (op < 15) {
            const size_t i = rng() % live.size();
            heap.free(live[i]);
            model.live.erase(live[i]);
            live[i] = live.back();
            live.pop_back();
        } else {
            // A bad free: a dead, interior or foreign address.
            uint64_t addr = model.start + (rng() % (model.end - model.start)) / kPage * kPage;
            if (rng() % 2)
                addr += 1 + rng() % (kPage - 1);
            if (!model.live.count(addr)) {
                heap.free(addr);
                ++bad_frees;
            }
        }
        check_stats(heap, model);
    }
    REQUIRE(heap.stats().bad_frees == bad_frees);

    for (uint64_t a : live)
        heap.free(a);
    const auto s = heap.stats();
    CHECK(s.live_ranges == 0);
    CHECK(s.largest_free == heap.size());
    CHECK(s.free_bytes == heap.size());
}

}  // namespace

TEST_CASE("Random allocs and frees agree with a std::map model", "[iova_heap][model]") {
    for (uint64_t seed : {1u, 2u, 3u, 42u}) {
        INFO("seed " << seed);
        run_differential(seed, 0x1'0000'0000ull, 64ull << 20, 4000, 1 << 20);
    }
}

TEST_CASE("A nearly full small heap agrees with the model under pressure", "[iova_heap][model]") {
    for (uint64_t seed : {7u, 8u}) {
        INFO("seed " << seed);
        run_differential(seed, 0x1'0000'0000ull + 3 * kPage, 4ull << 20, 4000, 256 << 10);
    }
}

TEST_CASE("A heap whose start is not aligned to the large alignments agrees with the model",
          "[iova_heap][model]") {
    run_differential(99, 0x1'0000'0000ull - 5 * kPage, 32ull << 20, 3000, 2 << 20);
}

TEST_CASE("Many live ranges keep their sizes through hash growth", "[iova_heap][model]") {
    std::mt19937_64 rng(5);
    IovaHeap heap(0x1'0000'0000ull, 4ull << 30);
    std::map<uint64_t, uint64_t> model;
    for (int i = 0; i < 20000; ++i) {
        const uint64_t bytes = (1 + rng() % 16) * kPage;
        const auto a = heap.alloc(bytes);
        REQUIRE(a);
        model.emplace(*a, bytes);
    }
    for (const auto& [a, n] : model)
        REQUIRE(heap.allocation_size(a) == n);
    for (const auto& [a, n] : model)
        heap.free(a);
    CHECK(heap.stats().largest_free == 4ull << 30);
    CHECK(heap.stats().bad_frees == 0);
}
