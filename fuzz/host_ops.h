// The record format fuzz_host_ccmd reads (and gen_seeds writes): one host call per record,
//   u8 op, u16 len, len bytes of arguments.
// The context (id 1) and its shared page (res_id 1, blob_id 0, B7) exist before the first record,
// as they do after Device::open.
#pragma once

#include <cstdint>

#include "host_sim/msm_renderer.h"

namespace fdnc::fuzz {

// The host every host-side target fuzzes: deterministic (GPU time only moves on Advance), with
// memory bounded so one input cannot exhaust the fuzzer.
inline host::HostSimConfig fuzz_host_config() {
    host::HostSimConfig c;
    c.kernel.clock = host::ClockMode::Manual;
    c.kernel.va_size = 256ull << 20;
    c.kernel.memory_limit = 64ull << 20;
    c.log_capacity = 16;
    return c;
}

enum class HostOp : uint8_t {
    SubmitCmd = 0,   // bytes = a ccmd stream (§6.1)
    CreateBlob = 1,  // u32 res_id, u32 blob_mem, u32 blob_flags, u64 size, u64 blob_id
    Unref = 2,       // u32 res_id
    Map = 3,         // u32 res_id (the harness touches the first and last mapped byte)
    Advance = 4,     // u32 microseconds of GPU time (0 = retire_all)
    Fence = 5,       // u32 ring_idx, u64 fence_id
    Count
};

inline constexpr uint32_t kCtxId = 1;
inline constexpr uint32_t kShmemResId = 1;

} // namespace fdnc::fuzz
