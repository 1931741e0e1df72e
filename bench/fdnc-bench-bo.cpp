// bo_new + bo_del latency through the whole client stack over the in-process host, at 0 and 200 us
// injected round trip, bo cache on and off, against the old path that waits for the host to assign
// the iova. Percentiles come from per-call timings collected in the run (counters p50_ns/p99_ns);
// compare modes by their ratio within one run, machines here are shared and noisy.
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

void report(benchmark::State& state, std::vector<double>& ns, fdnc::Device& dev) {
    if (ns.empty()) return;
    std::sort(ns.begin(), ns.end());
    auto pct = [&](double p) { return ns[std::min(ns.size() - 1, static_cast<size_t>(p * ns.size()))]; };
    state.counters["p50_ns"] = pct(0.50);
    state.counters["p99_ns"] = pct(0.99);
    state.counters["max_ns"] = ns.back();
    const fdnc::DeviceStats s = dev.stats();
    state.counters["host_waits_per_op"] =
        benchmark::Counter(static_cast<double>(s.host_waits), benchmark::Counter::kAvgIterations);
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
    std::vector<double> ns;
    ns.reserve(1 << 16);
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
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    report(state, ns, *dev);
    for (auto* b : live) b->unref();
}

BENCHMARK(BM_BoNewDel)
    ->ArgNames({"rtt_us", "cache", "host_iova"})
    ->Args({0, 1, 0})
    ->Args({0, 0, 0})
    ->Args({200, 1, 0})
    ->Args({200, 0, 0})
    ->Args({0, 0, 1})
    ->Args({200, 0, 1})
    ->Iterations(4000)
    ->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
