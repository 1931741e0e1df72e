// fdnc-bench-heap: IovaHeap against a best-fit std::map + std::set baseline (issue 17, W1-W4).
// IovaHeap runs twice: through its handle API ("fdnc": allocate/release, no address index) and
// through its by-address API ("fdnc_by_address": alloc/free(iova) with the iova -> block hash).
//
// The workloads follow issue 17's harness exactly, so the speed-ups over std::map best fit can be
// compared with its table. Every workload runs on a 4 GiB range at 0x1_0000_0000; "log-uniform
// a-b" is a page count exp(uniform(ln(a/4K), ln(b/4K + 1))) clamped to [a/4K, b/4K]; one request
// in eight is 64 KiB-aligned, the rest 4 KiB. Requests are drawn ahead of time so the random
// number generator costs both allocators the same.
//
//   W1  10,000 live, log-uniform 4 KiB-1 MiB; pairs of (free a random live buffer, allocate a new
//       one in its place); 20k warm-up pairs; one benchmark iteration = a window of 100k pairs.
//   W2  frame loop: per frame 14-26 command buffers (4-64 KiB, freed 2-3 frames later) and 2-4
//       uploads (64 KiB-1 MiB, freed next frame), the frame's frees and allocations shuffled;
//       8 textures (256 KiB-8 MiB, 64 KiB-aligned), one replaced with probability 1/16 per frame;
//       200 warm-up frames; one iteration = 1,000 frames.
//   W3  fill toward 95 % of the 4 GiB with log-uniform 4 KiB-1 MiB, then churn: allocate the next
//       request when it keeps occupancy within 95 %, else free a random live buffer. A request
//       whose first try fails is retried after one more free (and again, until it fits) and
//       counts as one failed request. Warm-up: the fill plus 100k requests; one iteration = 100k
//       requests; several seeds (the failure count depends on the random walk).
//   W4  N live (100, 1k, 10k, 100k), log-uniform 4-64 KiB, churn as W1, warm-up max(N, 20k)
//       pairs; one iteration = 100k pairs.
//
// Counters (JSON): ns_per_pair (thread CPU time per allocation served, its free included),
// failed_per_100k (W3), meta_bytes_per_live = bytes the allocator obtained from malloc and still
// holds after warm-up (global operator new/delete are replaced below and counted while the
// allocator is built and warmed up; the bench's own vectors are allocated outside that window)
// divided by the live ranges at that point. The allocator object itself (sizeof, fixed) is
// subtracted. W2 adds meta_bytes_per_peak_live (its live set swings within a frame).
//
//   fdnc-bench-heap --benchmark_repetitions=3 --benchmark_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "guest_alloc/iova_heap.h"

// ---- allocation counting: the metadata measurement ------------------------------------------

namespace {
// Net bytes obtained through operator new while counting is on (a size header is kept in front of
// each block so the matching delete can subtract it).
bool g_counting = false;
int64_t g_counted_bytes = 0;
constexpr size_t kHeader = alignof(std::max_align_t);
}  // namespace

// noinline: GCC 12 otherwise inlines the pair and flags malloc/free as mismatched new/delete.
[[gnu::noinline]] void* operator new(size_t n) {
    void* p = std::malloc(n + kHeader);
    if (!p)
        throw std::bad_alloc();
    *static_cast<size_t*>(p) = g_counting ? n : 0;
    if (g_counting)
        g_counted_bytes += int64_t(n);
    return static_cast<char*>(p) + kHeader;
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
    if (!p)
        return;
    void* base = static_cast<char*>(p) - kHeader;
    g_counted_bytes -= int64_t(*static_cast<size_t*>(base));
    std::free(base);
}
void operator delete(void* p, size_t) noexcept { operator delete(p); }

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
constexpr uint64_t kStart = 0x1'0000'0000ull;
constexpr uint64_t kSize = 4 * GiB;
constexpr uint64_t kNone = 0;  // no iova: the heap range starts above 0
constexpr uint64_t kWindow = 100000;

// ---- allocators under test -------------------------------------------------------------------

// Each allocator hands out a Handle (what its caller keeps to free the range), `none` when it
// failed; valid() tells them apart.

// IovaHeap through its handle API (allocate/release: no address lookup on free), the way
// OffsetAllocator is used through its Allocation handles.
class Fdnc {
public:
    using Handle = fdnc::IovaHeap::Allocation;
    static constexpr Handle none() { return {}; }
    static bool valid(const Handle& h) { return h.block != 0; }
    Fdnc() : heap_(kStart, kSize) {}
    Handle alloc(uint64_t size, uint64_t align) { return heap_.allocate(size, align).value_or(none()); }
    void free(const Handle& h) { heap_.release(h); }
    static const char* name() { return "fdnc"; }

private:
    fdnc::IovaHeap heap_;
};

// IovaHeap through its by-address API (alloc/free(iova), with its iova -> block hash).
class FdncByAddress {
public:
    using Handle = uint64_t;
    static constexpr Handle none() { return kNone; }
    static bool valid(Handle h) { return h != kNone; }
    FdncByAddress() : heap_(kStart, kSize) {}
    Handle alloc(uint64_t size, uint64_t align) { return heap_.alloc(size, align).value_or(kNone); }
    void free(Handle iova) { heap_.free(iova); }
    static const char* name() { return "fdnc_by_address"; }

private:
    fdnc::IovaHeap heap_;
};

// Exact best fit: free blocks by address (for merging) and by (size, address) (for the search).
class BestFitMap {
public:
    using Handle = uint64_t;
    static constexpr Handle none() { return kNone; }
    static bool valid(Handle h) { return h != kNone; }
    BestFitMap() { insert_free(kStart, kSize); }

    Handle alloc(uint64_t size, uint64_t align) {
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
        return kNone;
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

// The harness's log-uniform page count.
uint64_t log_uniform_bytes(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {
    const double lo_pages = double(lo / (4 * KiB)), hi_pages = double(hi / (4 * KiB));
    std::uniform_real_distribution<double> d(std::log(lo_pages), std::log(hi_pages + 1));
    const double pages = std::clamp(std::floor(std::exp(d(rng))), lo_pages, hi_pages);
    return uint64_t(pages) * 4 * KiB;
}

Request draw(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {
    const uint64_t size = log_uniform_bytes(rng, lo, hi);
    return Request{size, rng() % 8 == 0 ? 64 * KiB : 4 * KiB};
}

constexpr size_t kRequestTable = size_t{1} << 18;

std::vector<Request> make_requests(uint64_t seed, uint64_t lo, uint64_t hi) {
    std::mt19937_64 rng(seed);
    std::vector<Request> out(kRequestTable);
    for (Request& r : out)
        r = draw(rng, lo, hi);
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

// Thread CPU time: on a shared machine a preempted window would otherwise count the other
// tenants' time (both allocators are timed the same way).
struct Clock {
    static double now() {
        timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
    }
};

void report(benchmark::State& state, double seconds, uint64_t pairs, double meta_per_live) {
    state.counters["ns_per_pair"] = pairs ? seconds * 1e9 / double(pairs) : 0.0;
    state.counters["meta_bytes_per_live"] = meta_per_live;
}

// Starts counting the allocator's own malloc traffic (construction + warm-up).
struct MetaWindow {
    MetaWindow() {
        g_counted_bytes = 0;
        g_counting = true;
    }
    // `object` = sizeof the allocator object, allocated inside the window but fixed.
    double per_live(uint64_t live, size_t object) {
        g_counting = false;
        return live ? double(g_counted_bytes - int64_t(object)) / double(live) : 0.0;
    }
};

// ---- W1 / W4: random churn at a fixed live count ---------------------------------------------

template <class A>
void churn(benchmark::State& state, uint64_t lo, uint64_t hi, uint32_t live_count,
           uint64_t warmup) {
    const auto requests = make_requests(1, lo, hi);
    std::vector<typename A::Handle> live(live_count, A::none());
    MetaWindow meta;
    auto a = std::make_unique<A>();
    size_t req = 0;
    FastRng rng{0x9E3779B97F4A7C15ull};
    uint64_t failed = 0;
    auto pair = [&] {
        auto& slot = live[rng.below(live_count)];
        if (A::valid(slot))
            a->free(slot);
        const Request& r = requests[req++ & (kRequestTable - 1)];
        slot = a->alloc(r.size, r.align);
        failed += !A::valid(slot);
    };
    for (auto& slot : live) {
        const Request& r = requests[req++ & (kRequestTable - 1)];
        slot = a->alloc(r.size, r.align);
    }
    for (uint64_t i = 0; i < warmup; ++i)
        pair();
    const double meta_per_live = meta.per_live(live_count, sizeof(A));
    double seconds = 0;
    uint64_t pairs = 0;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        for (uint64_t i = 0; i < kWindow; ++i)
            pair();
        seconds += Clock::now() - t0;
        pairs += kWindow;
    }
    report(state, seconds, pairs, meta_per_live);
    state.counters["failed"] = double(failed);
    benchmark::DoNotOptimize(live.data());
}

template <class A>
void bm_w1(benchmark::State& state) {
    churn<A>(state, 4 * KiB, 1 * MiB, 10000, 20000);
}

template <class A>
void bm_w4(benchmark::State& state) {
    const auto n = uint32_t(state.range(0));
    churn<A>(state, 4 * KiB, 64 * KiB, n, std::max<uint64_t>(n, 20000));
}

// ---- W2: frame loop, replayed from a pre-generated trace -------------------------------------

// One step frees a slot or allocates into a slot.
struct FrameOp {
    int32_t slot;
    bool is_alloc;
    Request req;
};

constexpr int kW2WarmupFrames = 200;
constexpr int kW2FramesPerIteration = 1000;
constexpr int kW2Iterations = 10;

std::vector<FrameOp> make_frame_trace(uint64_t seed, int frames, std::vector<size_t>* frame_start) {
    std::mt19937_64 rng(seed);
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
    auto texture = [&] { return Request{log_uniform_bytes(rng, 256 * KiB, 8 * MiB), 64 * KiB}; };
    std::vector<FrameOp> trace;
    for (int f = 0; f < frames; ++f) {
        frame_start->push_back(trace.size());
        std::vector<FrameOp> ops;
        for (int32_t s : due[f % 4])
            ops.push_back({s, false, {0, 0}});
        std::vector<int32_t> freed = std::move(due[f % 4]);
        due[f % 4].clear();
        const int cmds = 14 + int(rng() % 13);  // 14-26 command buffers, freed 2-3 frames later
        for (int i = 0; i < cmds; ++i) {
            const int32_t s = take_slot();
            ops.push_back({s, true, draw(rng, 4 * KiB, 64 * KiB)});
            due[(f + 2 + int(rng() % 2)) % 4].push_back(s);
        }
        const int uploads = 2 + int(rng() % 3);  // 2-4 uploads, freed next frame
        for (int i = 0; i < uploads; ++i) {
            const int32_t s = take_slot();
            ops.push_back({s, true, draw(rng, 64 * KiB, 1 * MiB)});
            due[(f + 1) % 4].push_back(s);
        }
        for (int t = 0; t < 8; ++t) {
            if (f == 0) {
                textures[t] = take_slot();
                ops.push_back({textures[t], true, texture()});
            }
        }
        if (f != 0 && rng() % 16 == 0) {  // one texture replaced about every 16 frames
            const int t = int(rng() % 8);
            ops.push_back({textures[t], false, {0, 0}});
            freed.push_back(textures[t]);
            textures[t] = take_slot();
            ops.push_back({textures[t], true, texture()});
        }
        // Shuffle, but a slot reused within the frame must still be freed before it is refilled:
        // new allocations only take slots freed in earlier frames (freed ones return below).
        std::shuffle(ops.begin(), ops.end(), rng);
        trace.insert(trace.end(), ops.begin(), ops.end());
        for (int32_t s : freed)
            free_slots.push_back(s);
    }
    frame_start->push_back(trace.size());
    return trace;
}

template <class A>
void bm_w2(benchmark::State& state) {
    std::vector<size_t> frame_start;
    const int frames = kW2WarmupFrames + kW2FramesPerIteration * kW2Iterations;
    const std::vector<FrameOp> trace = make_frame_trace(2, frames, &frame_start);
    std::vector<typename A::Handle> slots(trace.size(), A::none());
    auto replay = [&](A& a, size_t from, size_t to, uint64_t* allocs) {
        for (size_t i = from; i < to; ++i) {
            const FrameOp& op = trace[i];
            auto& slot = slots[size_t(op.slot)];
            if (op.is_alloc) {
                slot = a.alloc(op.req.size, op.req.align);
                ++*allocs;
            } else if (A::valid(slot)) {
                a.free(slot);
                slot = A::none();
            }
        }
    };
    MetaWindow meta;
    auto a = std::make_unique<A>();
    uint64_t allocs = 0;
    // The live set swings within a frame (a frame allocates before its frees are replayed), so
    // the peak during warm-up is reported too: the structures are sized for it.
    uint64_t live = 0, peak = 0;
    for (int f = 0; f < kW2WarmupFrames; ++f) {
        for (size_t i = frame_start[size_t(f)]; i < frame_start[size_t(f) + 1]; ++i) {
            replay(*a, i, i + 1, &allocs);
            live += trace[i].is_alloc ? 1 : -1;
            peak = std::max(peak, live);
        }
    }
    const double meta_per_live = meta.per_live(live, sizeof(A));
    state.counters["meta_bytes_per_peak_live"] = meta_per_live * double(live) / double(peak);
    double seconds = 0;
    allocs = 0;
    int frame = kW2WarmupFrames;
    for (auto _ : state) {
        if (frame + kW2FramesPerIteration > frames) {
            state.SkipWithError("W2 trace too short for the iteration count");
            break;
        }
        const auto t0 = Clock::now();
        const size_t from = frame_start[size_t(frame)];
        replay(*a, from, frame_start[size_t(frame + kW2FramesPerIteration)], &allocs);
        seconds += Clock::now() - t0;
        frame += kW2FramesPerIteration;
    }
    report(state, seconds, allocs, meta_per_live);
}

// ---- W3: 95 % full ---------------------------------------------------------------------------

template <class A>
void bm_w3(benchmark::State& state) {
    const uint64_t seed = uint64_t(state.range(0));
    const auto requests = make_requests(seed, 4 * KiB, 1 * MiB);
    const uint64_t target = kSize / 100 * 95;
    std::vector<std::pair<typename A::Handle, uint64_t>> live;  // handle, size
    live.reserve(size_t{1} << 16);
    uint64_t live_bytes = 0;
    size_t req = 0;
    FastRng rng{0xD1B54A32D192ED03ull + seed};
    MetaWindow meta;
    auto a = std::make_unique<A>();
    auto free_random = [&] {
        const size_t i = rng.below(live.size());
        a->free(live[i].first);
        live_bytes -= live[i].second;
        live[i] = live.back();
        live.pop_back();
    };
    uint64_t failed = 0;
    // One request served: free until it keeps occupancy within 95 %, then allocate it (a failure
    // frees one more and retries, counted once).
    auto serve = [&] {
        const Request& r = requests[req++ & (kRequestTable - 1)];
        while (live_bytes + r.size > target)
            free_random();
        bool counted = false;
        for (;;) {
            if (const auto h = a->alloc(r.size, r.align); A::valid(h)) {
                live.push_back({h, r.size});
                live_bytes += r.size;
                return;
            }
            if (!counted)
                ++failed;
            counted = true;
            if (live.empty())
                return;
            free_random();
        }
    };
    // Fill: requests that fit within 95 % are allocated until the first that does not.
    for (;;) {
        const Request& r = requests[req & (kRequestTable - 1)];
        if (live_bytes + r.size > target)
            break;
        serve();
    }
    for (uint64_t i = 0; i < kWindow; ++i)
        serve();
    const double meta_per_live = meta.per_live(live.size(), sizeof(A));
    failed = 0;
    double seconds = 0;
    uint64_t served = 0;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        for (uint64_t i = 0; i < kWindow; ++i)
            serve();
        seconds += Clock::now() - t0;
        served += kWindow;
    }
    report(state, seconds, served, meta_per_live);
    state.counters["failed_per_100k"] = served ? double(failed) * 1e5 / double(served) : 0.0;
    state.counters["live"] = double(live.size());
}

// The allocators are registered per workload, side by side, so each ratio compares runs made
// close together in time (use --benchmark_enable_random_interleaving with repetitions too).
template <class A>
void register_workload(int w) {
    const std::string n = A::name();
    if (w == 1)
        benchmark::RegisterBenchmark(("W1_churn_10k/" + n).c_str(), bm_w1<A>)->Iterations(10);
    if (w == 2)
        benchmark::RegisterBenchmark(("W2_frames/" + n).c_str(), bm_w2<A>)
            ->Iterations(kW2Iterations);
    if (w == 3)
        benchmark::RegisterBenchmark(("W3_95pct/" + n).c_str(), bm_w3<A>)
            ->ArgName("seed")
            ->DenseRange(3, 10)
            ->Iterations(10);
    if (w == 4)
        benchmark::RegisterBenchmark(("W4_small/" + n).c_str(), bm_w4<A>)
            ->Arg(100)
            ->Arg(1000)
            ->Arg(10000)
            ->Arg(100000)
            ->Iterations(10);
}

}  // namespace

int main(int argc, char** argv) {
    for (int w = 1; w <= 4; ++w) {
        register_workload<Fdnc>(w);
        register_workload<FdncByAddress>(w);
        register_workload<BestFitMap>(w);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
