// fdnc-host-only wire extension, the guest's side: the encoder and response parser of
// FDNC_CCMD_GEM_GET_IOVA. The layout (what a host decodes) is fdnc_ext_wire.h.
#pragma once

#include <cstdint>
#include <span>

#include "ccmd_encoder.h"
#include "fdnc_ext_wire.h"

namespace fdnc::ccmd {

inline constexpr uint32_t kFdncGemGetIovaRspSize = sizeof(wire::fdnc_ccmd_gem_get_iova_rsp);
Encoded fdnc_gem_get_iova(uint32_t res_id);
bool parse_fdnc_gem_get_iova(std::span<const uint8_t> rsp, int32_t* ret, uint64_t* iova);

} // namespace fdnc::ccmd
