// Facts of the freedreno .rd capture container (PROTOCOL.md §9.1-9.3).
// No file header, no padding: a stream of {u32 type, u32 size, size payload bytes} sections.
#pragma once

#include <cstdint>
#include <string_view>

namespace fdnc::rd {

// enum rd_sect_type, written as 4 bytes (§9.1 "enum size", §9.2).
enum class SectType : uint32_t {
    none = 0,
    test = 1,
    cmd = 2,              // process/command name text
    gpuaddr = 3,          // buffer iova + size (§9.3)
    context = 4,          // legacy raw dump
    cmdstream = 5,        // legacy raw dump
    cmdstream_addr = 6,   // cmdstream iova + size in dwords (§9.3)
    param = 7,
    flush = 8,
    program = 9,
    vert_shader = 10,
    frag_shader = 11,
    buffer_contents = 12, // bytes of the buffer named by the preceding GPUADDR
    gpu_id = 13,          // u32
    chip_id = 14,         // u64 (8 bytes)
    shader_log_buffer = 15,
    cp_log_buffer = 16,
    wrbuffer = 17,        // u64 iova, u64 size, u64 clear, NUL-terminated name
};

inline constexpr uint32_t kSectionHeaderBytes = 8;
// §9.1: a {0xffffffff, 0xffffffff} header pair is filler with no payload.
inline constexpr uint32_t kFillerWord = 0xffffffffu;
// §9.3: the 32-bit address form is 8 bytes, the 64-bit form 12 (lo, size, hi).
inline constexpr uint32_t kAddr32Bytes = 8;
inline constexpr uint32_t kAddr64Bytes = 12;
inline constexpr uint32_t kWrBufferFixedBytes = 24;
// No real section comes near this; a larger claim is corruption, and refusing it bounds allocation.
inline constexpr uint64_t kMaxSectionBytes = uint64_t{1} << 30;

// Name of a known section type ("RD_GPUADDR"), or "" for an unknown one.
std::string_view sect_type_name(uint32_t type);
// The replay model understands this type (everything else is skipped and counted).
bool sect_type_is_known(uint32_t type);

} // namespace fdnc::rd
