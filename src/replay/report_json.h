// Machine-readable replay outputs (static library replay_report, the only part that uses
// nlohmann-json): the --json summary and the --trace Chrome trace-event file.
#pragma once

#include <string>
#include <vector>

#include "replay/report.h"

namespace fdnc::replay {

// {"workload", "transport", ..., "modes": {"guest": {...}, "host": {...}}, "ratios": {...}};
// schema in tools/fdnc-replay/README.md. Pretty-printed with a trailing newline.
std::string summary_json(const RunInfo& info, const std::vector<ModeResult>& modes);

// Chrome trace-event JSON (Perfetto opens it): one process per mode, one thread per stream;
// complete events for bo_new / flush / submit / host_wait / frame, counters for VA use and
// in-flight submits.
std::string trace_json(const RunInfo& info, const std::vector<ModeResult>& modes);

} // namespace fdnc::replay
