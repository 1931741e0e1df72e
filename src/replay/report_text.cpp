#include <cinttypes>
#include <cstdio>
#include <functional>

#include "replay/report.h"

namespace fdnc::replay {

namespace {

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

std::string bytes_str(double v) {
    const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    char b[64];
    std::snprintf(b, sizeof b, i ? "%.1f %s" : "%.0f %s", v, u[i]);
    return b;
}

// Share of the free address space that is not in the largest free block.
double fragmentation(const DeviceStats& s) {
    return s.va_free_bytes ? 1.0 - double(s.va_largest_free_bytes) / double(s.va_free_bytes) : 0.0;
}

} // namespace

double ratio(double a, double b) { return b != 0 ? a / b : 0.0; }

std::string format_table(const RunInfo& info, const std::vector<ModeResult>& modes) {
    std::string out;
    out += "fdnc-replay  workload " + info.workload + "  (" + info.source + ")\n";
    out += "transport    " + info.transport + "\n";
    out += "placement    " + info.placement + "   seed " + std::to_string(info.seed) + "   bo cache " +
           (info.bo_cache ? "on" : "off") + "   suballoc " + (info.suballoc ? "on" : "off") + "\n";
    if (!info.placement_reason.empty()) out += "             (heap placement: " + info.placement_reason + ")\n";
    if (!info.host_mode_skipped.empty()) out += "host mode    skipped: " + info.host_mode_skipped + "\n";
    if (info.idle_round_trip.count) {
        char b[160];
        std::snprintf(b, sizeof b, "round trip   idle context, %llu NOP requests: p50 %.2f us, p99 %.2f us",
                      static_cast<unsigned long long>(info.idle_round_trip.count), info.idle_round_trip.p50_us,
                      info.idle_round_trip.p99_us);
        out += b;
        if (info.injected_rtt_us >= 0) out += " (injected " + std::to_string(info.injected_rtt_us) + " us)";
        out += "\n";
    }
    out += "\n";
    const bool both = modes.size() == 2;
    struct Row {
        std::string name;
        std::function<double(const ModeResult&)> value;
        std::function<std::string(double)> show;
        bool ratio;
        bool guest_heap = false; // the guest heap's view: meaningless when the host picks iovas
    };
    auto num = [](double v) { return fmt("%.0f", v); };
    auto us = [](double v) { return fmt("%.2f us", v); };
    auto ms = [](double v) { return fmt("%.2f ms", v); };
    auto pct = [](double v) { return fmt("%.1f %%", v * 100); };
    std::vector<Row> rows = {
        {"buffers (bo_new)", [](const ModeResult& m) { return double(m.bos); }, num, false},
        {"submits", [](const ModeResult& m) { return double(m.submits); }, num, false},
        {"frames", [](const ModeResult& m) { return double(m.frames); }, num, false},
        {"bo_new p50", [](const ModeResult& m) { return m.bo_new().p50_us; }, us, true},
        {"bo_new p99", [](const ModeResult& m) { return m.bo_new().p99_us; }, us, true},
        {"bo_new max", [](const ModeResult& m) { return m.bo_new().max_us; }, us, true},
        {"host waits in bo_new", [](const ModeResult& m) { return double(m.bo_new_host_waits); }, num, false},
        {"host waits (all)", [](const ModeResult& m) { return double(m.stats.host_waits); }, num, false},
        {"ccmds sent", [](const ModeResult& m) { return double(m.stats.ccmds); }, num, true},
        {"batches", [](const ModeResult& m) { return double(m.stats.batches); }, num, true},
        {"bytes sent", [](const ModeResult& m) { return double(m.stats.bytes_sent); }, bytes_str, true},
        {"wall time", [](const ModeResult& m) { return double(m.wall_ns) / 1e6; }, ms, true},
        {"frame time p50", [](const ModeResult& m) { return m.frame().p50_us / 1000; }, ms, true},
        {"frame time p99", [](const ModeResult& m) { return m.frame().p99_us / 1000; }, ms, true},
        {"VA peak", [](const ModeResult& m) { return double(m.stats.va_peak_bytes); }, bytes_str, false, true},
        {"VA largest free", [](const ModeResult& m) { return double(m.stats.va_largest_free_bytes); }, bytes_str, false, true},
        {"VA fragmentation", [](const ModeResult& m) { return fragmentation(m.stats); }, pct, false, true},
        {"quarantined ranges max", [](const ModeResult& m) { return double(m.max_quarantined_ranges); }, num, false, true},
        {"in-flight submits max", [](const ModeResult& m) { return double(m.max_inflight); }, num, false},
        {"faults", [](const ModeResult& m) { return double(m.stats.faults); }, num, false},
        {"async errors", [](const ModeResult& m) { return double(m.stats.async_errors); }, num, false},
    };
    // Against the one round trip the old path must pay: what host mode costs beyond it is the
    // in-process host's own overhead, not the design's (guest mode: the call is far below it).
    if (info.injected_rtt_us >= 0)
        rows.insert(rows.begin() + 6, Row{"bo_new p50 - injected rtt",
                                          [&info](const ModeResult& m) { return m.bo_new().p50_us - double(info.injected_rtt_us); },
                                          us, false});
    // Against the round trip measured on an idle context: what a busy stream's host-mode bo_new
    // pays beyond it is the work queued ahead of its GEM_NEW (uploads, submits) and the GEM_NEW.
    if (info.idle_round_trip.count)
        rows.insert(rows.begin() + (info.injected_rtt_us >= 0 ? 7 : 6),
                    Row{"bo_new p50 - idle rtt",
                        [&info](const ModeResult& m) { return m.bo_new().p50_us - info.idle_round_trip.p50_us; }, us,
                        false});
    char line[256];
    std::snprintf(line, sizeof line, "%-24s", "");
    out += line;
    for (const ModeResult& m : modes) {
        std::snprintf(line, sizeof line, "%16s", m.mode.c_str());
        out += line;
    }
    if (both) out += "      host/guest";
    out += "\n";
    for (const Row& r : rows) {
        std::snprintf(line, sizeof line, "%-24s", r.name.c_str());
        out += line;
        for (const ModeResult& m : modes) {
            const bool na = r.guest_heap && m.mode == "host";
            std::snprintf(line, sizeof line, "%16s", na ? "(host's)" : r.show(r.value(m)).c_str());
            out += line;
        }
        if (both && r.ratio) {
            const double q = ratio(r.value(modes[1]), r.value(modes[0]));
            std::snprintf(line, sizeof line, "%15s", q ? fmt("%.2fx", q).c_str() : "-");
            out += line;
        }
        out += "\n";
    }
    if (both) {
        const double fr = ratio(modes[0].frame().mean_us, modes[1].frame().mean_us);
        out += "\nframe time guest/host (mean): " + fmt("%.3f", fr) + "   wall guest/host: " +
               fmt("%.3f", ratio(double(modes[0].wall_ns), double(modes[1].wall_ns))) + "\n";
    }
    return out;
}

std::string format_problems(const std::vector<ModeResult>& modes) {
    std::string out;
    for (const ModeResult& m : modes) {
        auto add = [&](uint64_t n, const char* what) {
            if (n) out += m.mode + ": " + std::to_string(n) + " " + what + "\n";
        };
        if (!m.error.empty()) out += m.mode + ": " + m.error + "\n";
        add(m.stats.faults, "GPU fault(s)");
        if (m.stats.async_errors) out += m.mode + ": async error (context lost)\n";
        add(m.alloc_failures, "failed bo_new");
        add(m.submit_failures, "failed submit(s)");
        add(m.write_failures, "failed upload(s)");
        add(m.wait_failures, "failed fence wait(s)");
    }
    return out;
}

} // namespace fdnc::replay
