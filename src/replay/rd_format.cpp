#include "replay/rd_format.h"

#include <array>

namespace fdnc::rd {

namespace {
constexpr std::array<std::string_view, 18> kNames = {
    "RD_NONE",          "RD_TEST",         "RD_CMD",           "RD_GPUADDR",
    "RD_CONTEXT",       "RD_CMDSTREAM",    "RD_CMDSTREAM_ADDR", "RD_PARAM",
    "RD_FLUSH",         "RD_PROGRAM",      "RD_VERT_SHADER",   "RD_FRAG_SHADER",
    "RD_BUFFER_CONTENTS", "RD_GPU_ID",     "RD_CHIP_ID",       "RD_SHADER_LOG_BUFFER",
    "RD_CP_LOG_BUFFER", "RD_WRBUFFER",
};
} // namespace

std::string_view sect_type_name(uint32_t type) {
    return type < kNames.size() ? kNames[type] : std::string_view{};
}

bool sect_type_is_known(uint32_t type) {
    switch (static_cast<SectType>(type)) {
    case SectType::cmd:
    case SectType::gpuaddr:
    case SectType::cmdstream_addr:
    case SectType::buffer_contents:
    case SectType::gpu_id:
    case SectType::chip_id:
    case SectType::wrbuffer:
        return true;
    default:
        return false;
    }
}

} // namespace fdnc::rd
