#include "msm_names.h"

#include <cstdio>
#include <cstring>

#include "msm_uapi.h"

namespace fdnc::wire {

const char* msm_param_name(uint32_t p) {
    switch (p) {
    case MSM_PARAM_GPU_ID: return "GPU_ID";
    case MSM_PARAM_GMEM_SIZE: return "GMEM_SIZE";
    case MSM_PARAM_CHIP_ID: return "CHIP_ID";
    case MSM_PARAM_MAX_FREQ: return "MAX_FREQ";
    case MSM_PARAM_TIMESTAMP: return "TIMESTAMP";
    case MSM_PARAM_GMEM_BASE: return "GMEM_BASE";
    case MSM_PARAM_PRIORITIES: return "PRIORITIES";
    case MSM_PARAM_PP_PGTABLE: return "PP_PGTABLE";
    case MSM_PARAM_FAULTS: return "FAULTS";
    case MSM_PARAM_SUSPENDS: return "SUSPENDS";
    case MSM_PARAM_SYSPROF: return "SYSPROF";
    case MSM_PARAM_COMM: return "COMM";
    case MSM_PARAM_CMDLINE: return "CMDLINE";
    case MSM_PARAM_VA_START: return "VA_START";
    case MSM_PARAM_VA_SIZE: return "VA_SIZE";
    case MSM_PARAM_HIGHEST_BANK_BIT: return "HIGHEST_BANK_BIT";
    case MSM_PARAM_RAYTRACING: return "RAYTRACING";
    case MSM_PARAM_UBWC_SWIZZLE: return "UBWC_SWIZZLE";
    case MSM_PARAM_MACROTILE_MODE: return "MACROTILE_MODE";
    case MSM_PARAM_UCHE_TRAP_BASE: return "UCHE_TRAP_BASE";
    default: return nullptr;
    }
}

const char* msm_info_name(uint32_t i) {
    switch (i) {
    case MSM_INFO_GET_OFFSET: return "GET_OFFSET";
    case MSM_INFO_GET_IOVA: return "GET_IOVA";
    case MSM_INFO_SET_NAME: return "SET_NAME";
    case MSM_INFO_GET_NAME: return "GET_NAME";
    case MSM_INFO_SET_IOVA: return "SET_IOVA";
    case MSM_INFO_GET_FLAGS: return "GET_FLAGS";
    case MSM_INFO_SET_METADATA: return "SET_METADATA";
    case MSM_INFO_GET_METADATA: return "GET_METADATA";
    default: return nullptr;
    }
}

std::string errno_name(int result) {
    if (result >= 0)
        return std::to_string(result);
    if (const char* n = strerrorname_np(-result))
        return std::string("-") + n;
    return "-" + std::to_string(-result);
}

} // namespace fdnc::wire
