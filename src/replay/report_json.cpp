#include "replay/report_json.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace fdnc::replay {

namespace {

using nlohmann::json;

json latency(const LatencySummary& s, double scale) {
    return {{"count", s.count}, {"p50", s.p50_us * scale}, {"p99", s.p99_us * scale}, {"max", s.max_us * scale},
            {"mean", s.mean_us * scale}};
}

json mode_json(const ModeResult& m) {
    json waits = json::object();
    for (size_t i = 0; i < static_cast<size_t>(HostWait::Count); i++)
        waits[host_wait_name(static_cast<HostWait>(i))] = m.stats.host_waits_by_reason[i];
    return {
        {"bos", m.bos},
        {"submits", m.submits},
        {"frames", m.frames},
        {"uploads", m.writes},
        {"host_waits", m.stats.host_waits},
        {"host_waits_bo_new", m.bo_new_host_waits},
        {"host_waits_by_reason", waits},
        {"faults", m.stats.faults},
        {"async_errors", m.stats.async_errors},
        {"alloc_failures", m.alloc_failures},
        {"submit_failures", m.submit_failures},
        {"wait_failures", m.wait_failures},
        {"upload_failures", m.write_failures},
        {"ccmds", m.stats.ccmds},
        {"batches", m.stats.batches},
        {"bytes_sent", m.stats.bytes_sent},
        {"wall_ms", double(m.wall_ns) / 1e6},
        {"bo_new_us", latency(m.bo_new(), 1.0)},
        {"frame_ms", latency(m.frame(), 1e-3)},
        {"va",
         {{"peak_bytes", m.stats.va_peak_bytes},
          {"largest_free_bytes", m.stats.va_largest_free_bytes},
          {"free_bytes", m.stats.va_free_bytes},
          {"quarantined_ranges_max", m.max_quarantined_ranges}}},
        {"inflight_submits_max", m.max_inflight},
        {"error", m.error},
    };
}

} // namespace

std::string summary_json(const RunInfo& info, const std::vector<ModeResult>& modes) {
    json j = {
        {"workload", info.workload}, {"source", info.source},   {"transport", info.transport},
        {"placement", info.placement}, {"seed", info.seed},     {"frames", info.frames},
        {"threads", info.threads},   {"bo_cache", info.bo_cache}, {"suballoc", info.suballoc},
    };
    if (!info.placement_reason.empty()) j["placement_reason"] = info.placement_reason;
    if (!info.host_mode_skipped.empty()) j["host_mode_skipped"] = info.host_mode_skipped;
    if (info.injected_rtt_us >= 0) j["injected_rtt_us"] = info.injected_rtt_us;
    if (info.idle_round_trip.count)
        j["idle_round_trip_us"] = {{"count", info.idle_round_trip.count}, {"p50", info.idle_round_trip.p50_us},
                                   {"p99", info.idle_round_trip.p99_us}, {"max", info.idle_round_trip.max_us}};
    j["modes"] = json::object();
    for (const ModeResult& m : modes) j["modes"][m.mode] = mode_json(m);
    if (modes.size() == 2) {
        const ModeResult &g = modes[0], &h = modes[1];
        j["ratios"] = {
            {"frame_time_guest_over_host", ratio(g.frame().mean_us, h.frame().mean_us)},
            {"wall_guest_over_host", ratio(double(g.wall_ns), double(h.wall_ns))},
            {"bo_new_p50_host_over_guest", ratio(h.bo_new().p50_us, g.bo_new().p50_us)},
        };
    }
    j["clean"] = std::all_of(modes.begin(), modes.end(), [](const ModeResult& m) { return m.clean(); });
    return j.dump(2) + "\n";
}

std::string trace_json(const RunInfo& info, const std::vector<ModeResult>& modes) {
    json ev = json::array();
    for (size_t p = 0; p < modes.size(); p++) {
        const ModeResult& m = modes[p];
        const int pid = int(p) + 1;
        ev.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid},
                      {"args", {{"name", m.mode + " iova (" + info.workload + ")"}}}});
        for (const Span& s : m.spans) {
            json e = {{"name", s.name}, {"cat", "replay"}, {"ph", "X"}, {"pid", pid}, {"tid", s.tid},
                      {"ts", double(s.ts_ns) / 1000.0}, {"dur", double(s.dur_ns) / 1000.0}};
            if (s.has_probe) {
                const BoNewProbe& p = s.probe;
                e["args"] = {{"minor_faults", p.minor_faults},         {"major_faults", p.major_faults},
                             {"voluntary_switches", p.voluntary_switches}, {"involuntary_switches", p.involuntary_switches},
                             {"transport_calls", p.transport_calls},   {"flushes", p.flushes},
                             {"flushed_bytes", p.flushed_bytes},       {"transport_us", double(p.transport_ns) / 1000.0},
                             {"flush_us", double(p.flush_ns) / 1000.0}, {"host_wakes", p.host_wakes}};
            }
            ev.push_back(std::move(e));
        }
        for (const CounterSample& c : m.counters) {
            ev.push_back({{"name", "VA use (MiB)"}, {"ph", "C"}, {"pid", pid}, {"ts", double(c.ts_ns) / 1000.0},
                          {"args",
                           {{"live", double(c.va_live_bytes) / 1048576.0},
                            {"quarantined", double(c.va_quarantined_bytes) / 1048576.0}}}});
            ev.push_back({{"name", "in-flight submits"}, {"ph", "C"}, {"pid", pid}, {"ts", double(c.ts_ns) / 1000.0},
                          {"args", {{"submits", c.inflight_submits}}}});
        }
    }
    json j = {{"traceEvents", ev}, {"displayTimeUnit", "ms"}};
    return j.dump() + "\n";
}

} // namespace fdnc::replay
