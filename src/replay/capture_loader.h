// Whole-file loading: .rd / .rd.gz -> Capture (PROTOCOL.md §9), built on RdReader.
//
//   auto r = fdnc::rd::load_capture("trace.rd.gz");
//   if (!r) { fprintf(stderr, "%s\n", r.error().what().c_str()); return 1; }
//   const fdnc::rd::Capture& cap = r.value();
#pragma once

#include <string>

#include "replay/capture.h"
#include "replay/rd_error.h"

namespace fdnc::rd {

inline constexpr uint64_t kPageBytes = 4096;

struct LoadOptions {
    // Granularity of Submit::buffers / lifetimes. 4 KiB = what SET_IOVA can bind (RP5); 1 keeps
    // the file's exact ranges (for inspection tools).
    uint64_t alignment = kPageBytes;
};

Result<Capture> load_capture(const std::string& path, const LoadOptions& opts = {});

} // namespace fdnc::rd
