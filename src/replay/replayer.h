// Replayer: runs a Workload's event stream on a Device (one fresh device per mode) and measures
// what the design is about: bo_new latency (steady_clock around every call), host waits by
// reason, wall and frame times, address-space use over time, in-flight submits, and the faults /
// async errors the host reports (DeviceStats).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fd_bo/device.h"
#include "replay/rd_writer.h"
#include "replay/workloads.h"

namespace fdnc::replay {

// Opens the device for one mode (the tool passes fdnc::open_device over the --uri).
using DeviceFactory = std::function<std::unique_ptr<Device>(const DeviceOptions&, std::string* error)>;

// What one bo_new did besides its own work (with ReplayOptions::trace only): this thread's
// getrusage(RUSAGE_THREAD) and RequestBuffer::thread_counters() read right before and right after
// the call (outside its timed span), subtracted. Page faults = first touches of memory (malloc'd
// or mapped pages new to the process); voluntary switches = the thread slept (a contended lock, a
// wait); involuntary = it was preempted; transport calls = execbuf/create_blob calls, each an
// item posted to the host (on inproc a wake-up of its thread), flushes = those that emptied
// buffered requests; transport_ns = time inside those calls; host wakes = those of them that found
// the host's thread asleep and woke it (in-process host only).
struct BoNewProbe {
    uint32_t minor_faults = 0, major_faults = 0;
    uint32_t voluntary_switches = 0, involuntary_switches = 0;
    uint32_t transport_calls = 0, flushes = 0;
    uint64_t flushed_bytes = 0;
    uint64_t transport_ns = 0, flush_ns = 0; // inside the transport calls / the flushes' calls
    uint32_t host_wakes = 0; // requests that had to wake a sleeping host thread (note_host_wake)
};

struct Span {         // a complete trace event
    const char* name; // static string: "bo_new", "flush", "submit", "host_wait", "frame"
    uint32_t tid;
    int64_t ts_ns;    // since the mode's start
    int64_t dur_ns;
    bool has_probe = false; // bo_new spans with ReplayOptions::trace: probe holds its counters
    BoNewProbe probe{};
};

struct CounterSample {
    int64_t ts_ns;
    uint64_t va_live_bytes;
    uint64_t va_quarantined_bytes;
    uint64_t inflight_submits;
};

struct BoRange {      // one buffer's address range over time (for the picture)
    uint64_t iova = 0;
    uint64_t size = 0;
    int64_t t_alloc_ns = 0;
    int64_t t_free_ns = -1;    // -1: never freed during the run
    int64_t t_release_ns = -1; // when the last submit using it was seen retired (end of quarantine)
};

struct LatencySummary {
    uint64_t count = 0;
    double p50_us = 0, p99_us = 0, max_us = 0, mean_us = 0;
};
LatencySummary summarize(std::vector<uint64_t> ns);

struct ModeResult {
    std::string mode;                  // "guest" / "host"
    std::string error;                 // non-empty: the run could not start or stopped early
    uint64_t bos = 0;                  // successful bo_new / bo_new_at
    uint64_t alloc_failures = 0;
    uint64_t submits = 0;
    uint64_t submit_failures = 0;
    uint64_t writes = 0;
    uint64_t write_failures = 0;
    uint64_t wait_failures = 0;        // fence waits that did not end signaled (timeout, lost host)
    uint64_t frames = 0;
    int64_t wall_ns = 0;
    std::vector<uint64_t> bo_new_ns;   // every call, in order
    std::vector<uint64_t> frame_ns;    // stream 0's frame times
    uint64_t bo_new_host_waits = 0;    // bo_new calls that blocked on the host (DeviceStats::bo_new_waits)
    uint64_t max_inflight = 0;
    uint64_t max_quarantined_ranges = 0;
    DeviceStats stats;                 // at the end, after every submit retired
    std::vector<Span> spans;           // only with ReplayOptions::trace
    std::vector<CounterSample> counters;
    std::vector<BoRange> ranges;       // only with ReplayOptions::ranges
    LatencySummary bo_new() const { return summarize(bo_new_ns); }
    LatencySummary frame() const { return summarize(frame_ns); }
    bool clean() const {
        return error.empty() && alloc_failures == 0 && submit_failures == 0 && write_failures == 0 &&
               wait_failures == 0 && stats.faults == 0 && stats.async_errors == 0;
    }
};

struct ReplayOptions {
    // iova_mode is set per mode. The bo cache and suballocation are off: a cache hit or a
    // suballocation never reaches the iova path, and that path is what a replay measures.
    DeviceOptions device = [] {
        DeviceOptions d;
        d.bo_cache = false;
        d.suballoc = false;
        return d;
    }();
    uint32_t frames_in_flight = 2; // frame N waits for frame N-2's last submit, as a GL driver does
    bool trace = false;            // keep spans
    bool ranges = false;           // keep BoRanges
    bool progress = false;         // progress bar on stderr (the caller checks for a TTY)
    int64_t sample_every_ns = 1'000'000; // counter sampling period
    // Write the replayed stream as an .rd capture: per submit, every bo it uses (iova order) and,
    // for those written since they were last recorded, the bytes written since then from offset
    // 0 (gaps zero), then its cmdstreams.
    rd::RdWriter* record = nullptr;
};

// Runs the whole workload in one mode. Never throws; problems land in ModeResult::error and the
// failure counters.
ModeResult run_mode(const Workload& w, IovaMode mode, const ReplayOptions& opts, const DeviceFactory& open);

const char* mode_name(IovaMode m);

// "inproc:rtt_us=N[,gpu_us=N]", plus a VA range that contains a capture's original addresses
// when w needs one (captures of old GPUs sit below the 4 GiB default start, PROTOCOL.md §1.3).
std::string default_inproc_uri(uint32_t rtt_us, std::optional<uint32_t> gpu_us, const Workload& w);

} // namespace fdnc::replay
