// Randomized differential tests: IovaHeap against a std::map model of the live ranges.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <optional>
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

// How a run drives the heap: by address (alloc/free(iova)), by handle (allocate/release), or by
// handle with by-address calls mixed in from the middle of the run (the address index is built
// then and both APIs must keep it right).
enum class Api { kAddress, kHandle, kMixed };

// One seeded run: random allocs (random sizes/alignments), random frees, bad frees. A twin heap
// driven by address gets the same requests: whatever the API, every decision is the same.
void run_differential(uint64_t seed, uint64_t start, uint64_t size, int steps, uint64_t max_alloc,
                      Api api = Api::kAddress) {
    std::mt19937_64 rng(seed);
    IovaHeap heap(start, size), twin(start, size);
    heap.set_strict(false);
    twin.set_strict(false);
    Model model{heap.start(), heap.start() + heap.size(), {}, 0};
    std::vector<IovaHeap::Allocation> live;
    std::vector<IovaHeap::Allocation> released;  // stale handles
    uint64_t bad_frees = 0;
    const uint64_t aligns[] = {kPage, kPage, kPage, 16 * kPage, 64 * kPage, 512 * kPage};
    auto by_handle = [&](int step) { return api == Api::kHandle || (api == Api::kMixed && (step < steps / 2 || step % 2)); };
    // Whether h may name a live block: a live range at its iova with the same block, or one
    // allocated by address (whose block the test does not know).
    auto is_live_handle = [&](IovaHeap::Allocation h) {
        return std::any_of(live.begin(), live.end(),
                           [&](auto l) { return l.iova == h.iova && (l.block == h.block || l.block == 0); });
    };

    for (int step = 0; step < steps; ++step) {
        const unsigned op = rng() % 16;
        if (op < 9 || live.empty()) {
            const uint64_t bytes = log_uniform(rng, 1, max_alloc);
            const uint64_t align = aligns[rng() % std::size(aligns)];
            const uint64_t rounded = (bytes + kPage - 1) / kPage * kPage;
            std::optional<IovaHeap::Allocation> a;
            if (by_handle(step)) {
                a = heap.allocate(bytes, align);
            } else if (const auto iova = heap.alloc(bytes, align)) {
                a = IovaHeap::Allocation{*iova, 0};
            }
            const auto expected = twin.alloc(bytes, align);
            REQUIRE(a.has_value() == expected.has_value());
            if (a) {
                REQUIRE(a->iova == *expected);
                REQUIRE(a->iova % align == 0);
                REQUIRE(model.fits(a->iova, rounded));
                REQUIRE(heap.allocation_size(a->iova) == rounded);
                if (a->block != 0)
                    REQUIRE(heap.allocation_size(*a) == rounded);
                model.live.emplace(a->iova, rounded);
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
            // A range allocated by address has no handle; one allocated by handle may be freed
            // either way once the index exists.
            if (live[i].block != 0 && (by_handle(step) || api == Api::kHandle)) {
                heap.release(live[i]);
                released.push_back(live[i]);
            } else {
                heap.free(live[i].iova);
            }
            twin.free(live[i].iova);
            model.live.erase(live[i].iova);
            live[i] = live.back();
            live.pop_back();
        } else if (by_handle(step) && rng() % 2) {
            // A bad release: a stale handle, or a forged one (a live iova with a wrong block, a
            // block number past the pool, block 0).
            IovaHeap::Allocation h{};
            const unsigned kind = rng() % 4;
            if (kind == 0 && !released.empty()) {
                h = released[rng() % released.size()];
            } else if (kind == 1 && !live.empty()) {
                h = live[rng() % live.size()];
                h.block += 1 + rng() % 3;
            } else if (kind == 2) {
                h = {model.start, 1u << 30};
            } else {
                h = {model.start, 0};
            }
            if (!is_live_handle(h)) {
                heap.release(h);
                ++bad_frees;
            }
        } else {
            // A bad free: a dead, interior or foreign address.
            uint64_t addr = model.start + (rng() % (model.end - model.start)) / kPage * kPage;
            if (rng() % 2)
                addr += 1 + rng() % (kPage - 1);
            if (!model.live.count(addr) && !by_handle(step)) {
                heap.free(addr);
                ++bad_frees;
            }
        }
        check_stats(heap, model);
    }
    REQUIRE(heap.stats().bad_frees == bad_frees);

    for (const auto& a : live) {
        if (a.block != 0) heap.release(a);
        else heap.free(a.iova);
    }
    const auto s = heap.stats();
    CHECK(s.live_ranges == 0);
    CHECK(s.largest_free == heap.size());
    CHECK(s.free_bytes == heap.size());
    CHECK(s.bad_frees == bad_frees);
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

TEST_CASE("The handle API makes the same decisions as the address API and refuses bad handles",
          "[iova_heap][model]") {
    for (uint64_t seed : {11u, 12u}) {
        INFO("seed " << seed);
        run_differential(seed, 0x1'0000'0000ull, 64ull << 20, 4000, 1 << 20, Api::kHandle);
        run_differential(seed, 0x1'0000'0000ull + 3 * kPage, 4ull << 20, 4000, 256 << 10, Api::kHandle);
    }
}

TEST_CASE("Handles and addresses mixed: the address index built mid-run stays right",
          "[iova_heap][model]") {
    for (uint64_t seed : {21u, 22u}) {
        INFO("seed " << seed);
        run_differential(seed, 0x1'0000'0000ull, 64ull << 20, 4000, 1 << 20, Api::kMixed);
        run_differential(seed, 0x1'0000'0000ull + 3 * kPage, 4ull << 20, 4000, 256 << 10, Api::kMixed);
    }
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
