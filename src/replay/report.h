// What a replay run was (for every report) and the plain-text summary table. The JSON, trace and
// SVG writers live in report_json.h / report_trace.h / report_svg.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replay/replayer.h"

namespace fdnc::replay {

struct RunInfo {
    std::string workload;   // workload name or capture file name
    std::string source;     // "synthetic" or the .rd path
    std::string transport;  // the URI the devices were opened with
    std::string placement;  // "heap" / "original"
    std::string placement_reason; // why a capture runs at heap placement though it asked for original
    std::string host_mode_skipped; // why --iova both ran guest mode only (the host lacks the extension)
    uint64_t seed = 0;
    int64_t injected_rtt_us = -1; // the in-process host's injected round trip (-1: another host)
    LatencySummary idle_round_trip; // probe_round_trip() before host mode ran (count 0: not probed)
    uint32_t frames = 0;
    uint32_t threads = 0;
    bool bo_cache = false;
    bool suballoc = false;
};

// ratio a/b, or 0 when b is 0.
double ratio(double a, double b);

// The side-by-side table: one column per mode, plus host/guest when both ran.
std::string format_table(const RunInfo& info, const std::vector<ModeResult>& modes);

// One line per problem (faults, async errors, failed calls); empty when every mode ran clean.
std::string format_problems(const std::vector<ModeResult>& modes);

// Well-formed SVG: address space over time per mode (live ranges as bars, quarantine marked)
// and the bo_new latency histograms of all modes.
std::string render_svg(const RunInfo& info, const std::vector<ModeResult>& modes);

} // namespace fdnc::replay
