// bo_new latency (and, separately, bo_del's) through the whole client stack over the in-process
// host, at 0, 200 and 5000 us injected round trip, bo cache on and off, against the old path that
// waits for the host to assign the iova. Percentiles come from per-call timings collected in the
// run (p50_ns/p99_ns/max_ns for bo_new, del_p50_ns/del_p99_ns for bo_del); bo_new_waits_per_op
// counts the calls that blocked (DeviceStats::bo_new_waits), warm-up excluded. Guest mode at rtt 0
// and 5000 is the no-wait figure: a hidden wait shows as a 5 ms step in p50 or p99. Compare modes
// by their ratio within one run; machines here are shared and noisy.
//
//   build/bench/fdnc-bench-bo [--benchmark_format=json]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "capi/open_device.h"
#include "fd_bo/bo.h"
#include "fd_bo/device.h"

namespace {

using Clock = std::chrono::steady_clock;

double pct(std::vector<double>& ns, double p) {
    std::sort(ns.begin(), ns.end());
    return ns[std::min(ns.size() - 1, static_cast<size_t>(p * ns.size()))];
}

void report(benchmark::State& state, std::vector<double>& ns, std::vector<double>& del_ns, uint64_t bo_new_waits) {
    if (ns.empty()) return;
    state.counters["p50_ns"] = pct(ns, 0.50);
    state.counters["p99_ns"] = pct(ns, 0.99);
    state.counters["max_ns"] = ns.back();
    state.counters["del_p50_ns"] = pct(del_ns, 0.50);
    state.counters["del_p99_ns"] = pct(del_ns, 0.99);
    state.counters["bo_new_waits_per_op"] =
        benchmark::Counter(static_cast<double>(bo_new_waits), benchmark::Counter::kAvgIterations);
}

// args: rtt_us, cache (0/1), host_iova (0/1)
void BM_BoNewDel(benchmark::State& state) {
    const int rtt = static_cast<int>(state.range(0));
    fdnc::DeviceOptions opts;
    opts.bo_cache = state.range(1) != 0;
    opts.suballoc = false; // measure whole bos: suballocation would hide the path under test
    opts.iova_mode = state.range(2) ? fdnc::IovaMode::Host : fdnc::IovaMode::Guest;
    std::string err;
    auto dev = fdnc::open_device("inproc:rtt_us=" + std::to_string(rtt), opts, &err);
    if (!dev) {
        state.SkipWithError(err.c_str());
        return;
    }
    // A working set of live bos, as a driver has, so the heap is not trivially empty.
    std::vector<fdnc::Bo*> live;
    for (int i = 0; i < 256; i++) live.push_back(dev->bo_new(65536, 0, nullptr, nullptr));
    std::vector<double> ns, del_ns;
    ns.reserve(1 << 16);
    del_ns.reserve(1 << 16);
    const uint64_t waits_before = dev->stats().bo_new_waits; // the warm-up's are not the loop's
    uint32_t rng = 12345;
    for (auto _ : state) {
        rng = rng * 1664525u + 1013904223u;
        const uint64_t size = 4096u << (rng >> 29); // 4 KiB .. 512 KiB
        const auto t0 = Clock::now();
        fdnc::Bo* bo = dev->bo_new(size, 0, nullptr, nullptr);
        const auto t1 = Clock::now();
        benchmark::DoNotOptimize(bo);
        if (!bo) {
            state.SkipWithError("bo_new failed");
            break;
        }
        bo->unref();
        const auto t2 = Clock::now();
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
        del_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t1).count());
    }
    report(state, ns, del_ns, dev->stats().bo_new_waits - waits_before);
    for (auto* b : live) b->unref();
}

BENCHMARK(BM_BoNewDel)
    ->ArgNames({"rtt_us", "cache", "host_iova"})
    ->Args({0, 1, 0})
    ->Args({0, 0, 0})
    ->Args({200, 1, 0})
    ->Args({200, 0, 0})
    ->Args({5000, 0, 0})
    ->Args({0, 0, 1})
    ->Args({200, 0, 1})
    ->Iterations(4000)
    ->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
