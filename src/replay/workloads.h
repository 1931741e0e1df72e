// Replay workloads: a deterministic stream of buffer and submit events, either generated from a
// seed (gl-frames, compute, alloc-storm) or taken from an .rd capture. The replayer runs the same
// stream on every mode, so guest- and host-chosen iovas are compared on identical work.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "replay/capture.h"

namespace fdnc::replay {

enum class EventKind : uint8_t {
    Alloc,  // bo id, size, flags, iova (0 = the device's heap picks)
    Write,  // bo id, offset, size; bytes from Workload::bytes or a seeded pattern
    Submit, // cmd ranges + every bo the submit uses
    Free,   // bo id (the client's last reference)
    Frame,  // frame boundary: frame time is measured here, and the client throttles
};

inline constexpr uint64_t kPatternData = ~uint64_t{0}; // Event::data_offset: synthetic bytes
inline constexpr uint32_t kNoText = ~uint32_t{0};

struct CmdRef {
    uint32_t bo = 0;
    uint64_t offset = 0;
    uint32_t size = 0; // bytes, multiple of 4
};

struct Event {
    EventKind kind = EventKind::Frame;
    uint32_t bo = 0;
    uint32_t flags = 0;                 // Alloc: fdnc::kBo* flags
    uint64_t size = 0;                  // Alloc: bytes; Write: length
    uint64_t iova = 0;                  // Alloc: original address, 0 = heap-chosen
    uint64_t offset = 0;                // Write: offset in the bo
    uint64_t data_offset = kPatternData; // Write: into Workload::bytes, or kPatternData
    uint32_t pattern = 0;               // Write: seed of the synthetic bytes
    uint32_t text = kNoText;            // Submit: index into Workload::texts (RD_CMD)
    std::vector<CmdRef> cmds;           // Submit
    std::vector<uint32_t> bos;          // Submit: every bo used (cmd bos included)
};

// One client thread's events, in order. Bo ids are unique across all streams.
struct Stream {
    std::vector<Event> events;
};

struct Workload {
    std::string name;                  // "gl-frames", or the capture's file name
    uint32_t gpu_id = 0;               // 0 = take the device's
    std::optional<uint64_t> chip_id;
    std::vector<Stream> streams;       // one per thread
    std::vector<uint8_t> bytes;        // buffer contents of a capture
    std::vector<std::string> texts;    // RD_CMD texts
    uint32_t bo_ids = 0;               // ids are 0..bo_ids-1
    bool original_addresses = false;   // Alloc events carry the capture's iovas
    uint64_t va_min = 0, va_end = 0;   // span of those iovas (0, 0 if none)

    uint64_t event_count() const;
    uint64_t count(EventKind k) const;
};

struct WorkloadParams {
    uint32_t frames = 0;  // 0 = the workload's default
    uint32_t threads = 0; // 0 = the workload's default (alloc-storm: 4, others: 1)
    uint64_t seed = 1;
};

std::span<const std::string_view> workload_names();
// nullopt + *error for an unknown name.
std::optional<Workload> make_workload(std::string_view name, const WorkloadParams& p, std::string* error);

enum class IovaPlacement {
    Original, // each buffer at the capture's address (bo_new_at), as Mesa's replay does on hardware
    Heap,     // the device's heap chooses (bo_new)
};

// One stream: per submit, allocate the lifetimes that start there, upload the submit's contents,
// submit, free the lifetimes that end there, frame boundary (a capture frame = one submit).
Workload from_capture(const rd::Capture& c, std::string name, IovaPlacement placement);

// Whether a capture replayed at its original addresses fits a host's VA range [va_start,
// va_start + va_size): empty when it does (or has no addresses), else a one-line reason naming
// both ranges. A real host offers one fixed range (e.g. [0x100000000, 0x200000000)); 32-bit
// captures lie below it, so such a replay must use heap placement.
std::string original_placement_misfit(const Workload& w, uint64_t va_start, uint64_t va_size);

// The synthetic bytes of a Write with data_offset == kPatternData.
void fill_pattern(uint32_t pattern, uint64_t offset, std::span<uint8_t> out);

} // namespace fdnc::replay
