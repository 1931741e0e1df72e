// Names of msm uAPI values for logs: the drm_shim's ioctl log and host_sim's kernel call log
// write the same words, so the realhost suite can compare a model host with the real one.
#pragma once

#include <cstdint>
#include <string>

namespace fdnc::wire {

const char* msm_param_name(uint32_t param); // "VA_START", ...; nullptr if unknown
const char* msm_info_name(uint32_t info);   // "SET_IOVA", ...; nullptr if unknown
std::string errno_name(int result);         // 0 -> "0", -EINVAL -> "-EINVAL"

} // namespace fdnc::wire
