// fdnc-bench-heap: IovaHeap against a best-fit std::map + std::set baseline (issue 3, W1-W4).
//
// Every workload runs on a 4 GiB range at 0x1_0000_0000 (PROTOCOL.md default va_start/va_size),
// 4 KiB alignment with one request in eight 64 KiB-aligned, seeded. Time per iteration is one
// alloc+free pair for W1/W3/W4; every workload also reports `pair_time` (seconds per allocation
// served, including its free). Request sizes are drawn ahead of time so the random number
// generator costs both allocators the same few nanoseconds.
//
//   fdnc-bench-heap --benchmark_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "guest_alloc/iova_heap.h"

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
constexpr uint64_t kStart = 0x1'0000'0000ull;
constexpr uint64_t kSize = 4 * GiB;
constexpr uint64_t kNone = 0;  // no iova: the heap range starts above 0

// ---- allocators under test -------------------------------------------------------------------

class Fdnc {
public:
    explicit Fdnc(uint32_t expected_live) : heap_(kStart, kSize) { heap_.reserve(expected_live); }
    std::optional<uint64_t> alloc(uint64_t size, uint64_t align) { return heap_.alloc(size, align); }
    void free(uint64_t iova) { heap_.free(iova); }
    uint64_t largest_free() const { return heap_.stats().largest_free; }
    uint64_t free_bytes() const { return heap_.stats().free_bytes; }
    static const char* name() { return "fdnc"; }

private:
    fdnc::IovaHeap heap_;
};

// Exact best fit: free blocks by address (for merging) and by (size, address) (for the search).
class BestFitMap {
public:
    explicit BestFitMap(uint32_t) { insert_free(kStart, kSize); }

    std::optional<uint64_t> alloc(uint64_t size, uint64_t align) {
        size = (size + 4095) & ~uint64_t{4095};
        for (auto it = by_size_.lower_bound({size, 0}); it != by_size_.end(); ++it) {
            const auto [bsize, bstart] = *it;
            const uint64_t first = (bstart + align - 1) & ~(align - 1);
            if (first + size > bstart + bsize)
                continue;
            by_size_.erase(it);
            by_addr_.erase(bstart);
            if (first > bstart)
                insert_free(bstart, first - bstart);
            if (first + size < bstart + bsize)
                insert_free(first + size, bstart + bsize - first - size);
            live_.emplace(first, size);
            return first;
        }
        return std::nullopt;
    }

    void free(uint64_t iova) {
        auto live = live_.find(iova);
        if (live == live_.end())
            return;
        uint64_t start = iova, size = live->second;
        live_.erase(live);
        auto next = by_addr_.lower_bound(start);
        if (next != by_addr_.end() && next->first == start + size) {
            size += next->second;
            by_size_.erase({next->second, next->first});
            next = by_addr_.erase(next);
        }
        if (next != by_addr_.begin()) {
            auto prev = std::prev(next);
            if (prev->first + prev->second == start) {
                start = prev->first;
                size += prev->second;
                by_size_.erase({prev->second, prev->first});
                by_addr_.erase(prev);
            }
        }
        insert_free(start, size);
    }

    uint64_t largest_free() const { return by_size_.empty() ? 0 : by_size_.rbegin()->first; }
    uint64_t free_bytes() const {
        uint64_t sum = 0;
        for (const auto& [start, size] : by_addr_)
            sum += size;
        return sum;
    }
    static const char* name() { return "bestfit_map"; }

private:
    void insert_free(uint64_t start, uint64_t size) {
        by_addr_.emplace(start, size);
        by_size_.emplace(size, start);
    }
    std::map<uint64_t, uint64_t> by_addr_;
    std::set<std::pair<uint64_t, uint64_t>> by_size_;
    std::unordered_map<uint64_t, uint64_t> live_;
};

// ---- request generation ----------------------------------------------------------------------

struct Request {
    uint64_t size;
    uint64_t align;
};

// Log-uniform sizes in [lo, hi]; 1 in 8 requests 64 KiB-aligned.
std::vector<Request> make_requests(uint64_t seed, uint64_t lo, uint64_t hi, size_t count) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> exp(std::log2(double(lo)), std::log2(double(hi)));
    std::vector<Request> out(count);
    for (Request& r : out) {
        r.size = std::clamp<uint64_t>(uint64_t(std::exp2(exp(rng))), lo, hi);
        r.align = rng() % 8 == 0 ? 64 * KiB : 4 * KiB;
    }
    return out;
}

// xorshift64*: cheap enough not to dominate a 30 ns measurement.
struct FastRng {
    uint64_t s;
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1Dull;
    }
    size_t below(size_t n) { return size_t((next() >> 32) * n >> 32); }
};

constexpr size_t kRequestTable = size_t{1} << 16;

void report_pairs(benchmark::State& state, uint64_t pairs) {
    state.counters["pair_time"] =
        benchmark::Counter(double(pairs), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

template <class A>
void report_fragmentation(benchmark::State& state, const A& a) {
    const uint64_t total = a.free_bytes();
    state.counters["largest_over_free"] = total ? double(a.largest_free()) / double(total) : 1.0;
}

// ---- W1 / W4: random churn at a fixed live count ---------------------------------------------

template <class A>
void churn(benchmark::State& state, uint64_t lo, uint64_t hi, uint32_t live_count) {
    const auto requests = make_requests(1, lo, hi, kRequestTable);
    A a(live_count);
    std::vector<uint64_t> live(live_count, kNone);
    size_t req = 0;
    for (auto& slot : live) {
        const Request& r = requests[req++ % kRequestTable];
        slot = a.alloc(r.size, r.align).value_or(kNone);
    }
    FastRng rng{0x9E3779B97F4A7C15ull};
    uint64_t failed = 0;
    for (auto _ : state) {
        uint64_t& slot = live[rng.below(live_count)];
        if (slot != kNone)
            a.free(slot);
        const Request& r = requests[req++ & (kRequestTable - 1)];
        const auto iova = a.alloc(r.size, r.align);
        failed += !iova;
        slot = iova.value_or(kNone);
    }
    report_pairs(state, state.iterations());
    state.counters["failed"] = double(failed);
    report_fragmentation(state, a);
}

template <class A>
void bm_w1(benchmark::State& state) {
    churn<A>(state, 4 * KiB, 1 * MiB, 10000);
}

template <class A>
void bm_w4(benchmark::State& state) {
    churn<A>(state, 4 * KiB, 64 * KiB, uint32_t(state.range(0)));
}

// ---- W2: frame loop, replayed from a pre-generated trace -------------------------------------

// One step frees a slot and/or allocates into a slot (kNoSlot for none).
struct FrameOp {
    int32_t free_slot;
    int32_t alloc_slot;
    Request req;
};
constexpr int32_t kNoSlot = -1;

std::vector<FrameOp> make_frame_trace(uint64_t seed, int frames) {
    std::mt19937_64 rng(seed);
    auto log_uniform = [&](uint64_t lo, uint64_t hi) {
        std::uniform_real_distribution<double> d(std::log2(double(lo)), std::log2(double(hi)));
        return std::clamp<uint64_t>(uint64_t(std::exp2(d(rng))), lo, hi);
    };
    auto request = [&](uint64_t lo, uint64_t hi) {
        return Request{log_uniform(lo, hi), rng() % 8 == 0 ? 64 * KiB : 4 * KiB};
    };
    std::vector<int32_t> free_slots;
    int32_t next_slot = 0;
    auto take_slot = [&] {
        if (free_slots.empty())
            return next_slot++;
        const int32_t s = free_slots.back();
        free_slots.pop_back();
        return s;
    };
    std::vector<std::vector<int32_t>> due(4);  // slots to free at frame f % 4
    int32_t textures[8];
    std::vector<FrameOp> trace;
    for (int f = 0; f < frames; ++f) {
        std::vector<int32_t> frees = std::move(due[f % 4]);
        due[f % 4].clear();
        std::vector<std::pair<int32_t, Request>> allocs;
        const int cmds = 14 + int(rng() % 13);  // 14-26 command buffers, freed 2-3 frames later
        for (int i = 0; i < cmds; ++i) {
            const int32_t s = take_slot();
            allocs.push_back({s, request(4 * KiB, 64 * KiB)});
            due[(f + 2 + int(rng() % 2)) % 4].push_back(s);
        }
        const int uploads = 2 + int(rng() % 3);  // 2-4 uploads, freed next frame
        for (int i = 0; i < uploads; ++i) {
            const int32_t s = take_slot();
            allocs.push_back({s, request(64 * KiB, 1 * MiB)});
            due[(f + 1) % 4].push_back(s);
        }
        for (int t = 0; t < 8; ++t) {  // 8 textures, one replaced every few frames
            if (f == 0 || rng() % 32 == 0) {
                if (f != 0)
                    frees.push_back(textures[t]);
                textures[t] = take_slot();
                allocs.push_back({textures[t], request(256 * KiB, 8 * MiB)});
            }
        }
        const size_t steps = std::max(frees.size(), allocs.size());
        for (size_t i = 0; i < steps; ++i) {
            FrameOp op{kNoSlot, kNoSlot, {0, 0}};
            if (i < frees.size())
                op.free_slot = frees[i];
            if (i < allocs.size()) {
                op.alloc_slot = allocs[i].first;
                op.req = allocs[i].second;
            }
            trace.push_back(op);
        }
        // Slots freed this frame become reusable once their free has been replayed.
        for (int32_t s : frees)
            free_slots.push_back(s);
    }
    return trace;
}

template <class A>
void bm_w2(benchmark::State& state) {
    static const std::vector<FrameOp> trace = make_frame_trace(2, 20000);
    std::vector<uint64_t> slots(trace.size(), kNone);
    auto a = std::make_unique<A>(128);
    size_t pos = 0;
    uint64_t allocs = 0;
    for (auto _ : state) {
        const FrameOp& op = trace[pos];
        if (op.free_slot != kNoSlot && slots[size_t(op.free_slot)] != kNone) {
            a->free(slots[size_t(op.free_slot)]);
            slots[size_t(op.free_slot)] = kNone;
        }
        if (op.alloc_slot != kNoSlot) {
            slots[size_t(op.alloc_slot)] = a->alloc(op.req.size, op.req.align).value_or(kNone);
            ++allocs;
        }
        if (++pos == trace.size()) {
            state.PauseTiming();
            pos = 0;
            std::fill(slots.begin(), slots.end(), kNone);
            a = std::make_unique<A>(128);
            state.ResumeTiming();
        }
    }
    report_pairs(state, allocs);
    report_fragmentation(state, *a);
}

// ---- W3: fill to 95%, churn (free one, allocate one); a failed request is retried after one
// more random free, so each failure lowers the fill a little.

template <class A>
void bm_w3(benchmark::State& state) {
    // W3's failure count depends on where the random walk of the fill level goes, so it is run
    // for several seeds (the benchmark argument).
    const uint64_t seed = uint64_t(state.range(0));
    const auto requests = make_requests(seed, 4 * KiB, 1 * MiB, kRequestTable);
    const uint64_t target = kSize / 100 * 95;
    A a(32768);
    std::vector<std::pair<uint64_t, uint64_t>> live;  // iova, rounded size
    uint64_t live_bytes = 0;
    size_t req = 0;
    auto rounded = [](uint64_t s) { return (s + 4095) & ~uint64_t{4095}; };
    while (live_bytes < target) {
        const Request& r = requests[req++ & (kRequestTable - 1)];
        const auto iova = a.alloc(r.size, r.align);
        if (!iova)
            break;
        live.push_back({*iova, rounded(r.size)});
        live_bytes += rounded(r.size);
    }
    FastRng rng{0xD1B54A32D192ED03ull + seed};
    auto free_random = [&] {
        const size_t i = rng.below(live.size());
        a.free(live[i].first);
        live_bytes -= live[i].second;
        live[i] = live.back();
        live.pop_back();
    };
    uint64_t served = 0, failed = 0;
    for (auto _ : state) {
        free_random();
        const Request& r = requests[req++ & (kRequestTable - 1)];
        for (;;) {
            const auto iova = a.alloc(r.size, r.align);
            if (iova) {
                live.push_back({*iova, rounded(r.size)});
                live_bytes += rounded(r.size);
                break;
            }
            ++failed;
            if (live.empty())
                break;
            free_random();
        }
        ++served;
    }
    report_pairs(state, served);
    state.counters["failed_per_100k"] = served ? double(failed) * 1e5 / double(served) : 0.0;
    report_fragmentation(state, a);
}

template <class A>
void register_all() {
    const std::string n = A::name();
    benchmark::RegisterBenchmark(("W1_churn_10k/" + n).c_str(), bm_w1<A>);
    benchmark::RegisterBenchmark(("W2_frames/" + n).c_str(), bm_w2<A>);
    // A fixed count so both allocators serve the same request sequence.
    benchmark::RegisterBenchmark(("W3_95pct/" + n).c_str(), bm_w3<A>)
        ->ArgName("seed")
        ->DenseRange(3, 6)
        ->Iterations(1000000);
    benchmark::RegisterBenchmark(("W4_small/" + n).c_str(), bm_w4<A>)
        ->Arg(100)
        ->Arg(1000)
        ->Arg(10000)
        ->Arg(100000);
}

}  // namespace

int main(int argc, char** argv) {
    register_all<Fdnc>();
    register_all<BestFitMap>();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
