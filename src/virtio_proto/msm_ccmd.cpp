#include "msm_ccmd.h"

namespace fdnc::wire {

const char* msm_ccmd_name(uint32_t cmd) {
    switch (cmd) {
    case MSM_CCMD_NOP: return "NOP";
    case MSM_CCMD_IOCTL_SIMPLE: return "IOCTL_SIMPLE";
    case MSM_CCMD_GEM_NEW: return "GEM_NEW";
    case MSM_CCMD_GEM_SET_IOVA: return "GEM_SET_IOVA";
    case MSM_CCMD_GEM_CPU_PREP: return "GEM_CPU_PREP";
    case MSM_CCMD_GEM_SET_NAME: return "GEM_SET_NAME";
    case MSM_CCMD_GEM_SUBMIT: return "GEM_SUBMIT";
    case MSM_CCMD_GEM_UPLOAD: return "GEM_UPLOAD";
    case MSM_CCMD_SUBMITQUEUE_QUERY: return "SUBMITQUEUE_QUERY";
    case MSM_CCMD_WAIT_FENCE: return "WAIT_FENCE";
    case MSM_CCMD_SET_DEBUGINFO: return "SET_DEBUGINFO";
    default: return "UNKNOWN";
    }
}

} // namespace fdnc::wire
