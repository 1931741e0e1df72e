// Every MSM_CCMD request and response (virglrenderer msm_proto.h / Mesa msm_proto.h), as fdnc's own
// structs, PROTOCOL.md §5.4. Natural alignment gives the same bytes as the host's packed(4) forms on
// x86_64/aarch64/armv7; the stream itself only guarantees 4-byte alignment, so decoders memcpy.
#pragma once

#include <cstddef>
#include <cstdint>

#include "msm_uapi.h"
#include "vdrm_wire.h"

namespace fdnc::wire {

enum msm_ccmd : uint32_t {
    MSM_CCMD_NOP = 1,
    MSM_CCMD_IOCTL_SIMPLE = 2,
    MSM_CCMD_GEM_NEW = 3,
    MSM_CCMD_GEM_SET_IOVA = 4,
    MSM_CCMD_GEM_CPU_PREP = 5,
    MSM_CCMD_GEM_SET_NAME = 6,
    MSM_CCMD_GEM_SUBMIT = 7,
    MSM_CCMD_GEM_UPLOAD = 8,
    MSM_CCMD_SUBMITQUEUE_QUERY = 9,
    MSM_CCMD_WAIT_FENCE = 10,
    MSM_CCMD_SET_DEBUGINFO = 11,
    MSM_CCMD_LAST = 12, // count, not a command
};

constexpr uint32_t align4(uint32_t n) { return (n + 3u) & ~3u; }

struct msm_ccmd_nop_req {
    vdrm_ccmd_req hdr;
};
static_assert(sizeof(msm_ccmd_nop_req) == 16);

struct msm_ccmd_ioctl_simple_req {
    vdrm_ccmd_req hdr;
    uint32_t cmd; // full ioctl request number
    // uint8_t payload[]: _IOC_SIZE(cmd) bytes
};
static_assert(sizeof(msm_ccmd_ioctl_simple_req) == 20);
static_assert(offsetof(msm_ccmd_ioctl_simple_req, cmd) == 16);

struct msm_ccmd_ioctl_simple_rsp {
    vdrm_ccmd_rsp hdr;
    int32_t ret; // 0 or -1: the host does not transport errno (P4)
    // uint8_t payload[]: the ioctl struct after the call when cmd has IOC_OUT
};
static_assert(sizeof(msm_ccmd_ioctl_simple_rsp) == 8);
static_assert(offsetof(msm_ccmd_ioctl_simple_rsp, ret) == 4);
inline constexpr uint32_t kIoctlSimplePayloadMax = 128; // §5.5

struct msm_ccmd_gem_new_req {
    vdrm_ccmd_req hdr;
    uint64_t iova;
    uint64_t size;
    uint32_t flags;
    uint32_t blob_id;
};
static_assert(sizeof(msm_ccmd_gem_new_req) == 40);
static_assert(offsetof(msm_ccmd_gem_new_req, iova) == 16);
static_assert(offsetof(msm_ccmd_gem_new_req, size) == 24);
static_assert(offsetof(msm_ccmd_gem_new_req, flags) == 32);
static_assert(offsetof(msm_ccmd_gem_new_req, blob_id) == 36);

struct msm_ccmd_gem_set_iova_req {
    vdrm_ccmd_req hdr;
    uint64_t iova; // 0 = release
    uint32_t res_id;
    uint32_t pad_;
};
static_assert(sizeof(msm_ccmd_gem_set_iova_req) == 32);
static_assert(offsetof(msm_ccmd_gem_set_iova_req, iova) == 16);
static_assert(offsetof(msm_ccmd_gem_set_iova_req, res_id) == 24);
static_assert(offsetof(msm_ccmd_gem_set_iova_req, pad_) == 28);

struct msm_ccmd_gem_cpu_prep_req {
    vdrm_ccmd_req hdr;
    uint32_t res_id;
    uint32_t op;
};
static_assert(sizeof(msm_ccmd_gem_cpu_prep_req) == 24);
static_assert(offsetof(msm_ccmd_gem_cpu_prep_req, res_id) == 16);
static_assert(offsetof(msm_ccmd_gem_cpu_prep_req, op) == 20);

struct msm_ccmd_gem_cpu_prep_rsp {
    vdrm_ccmd_rsp hdr;
    int32_t ret;
};
static_assert(sizeof(msm_ccmd_gem_cpu_prep_rsp) == 8);
static_assert(offsetof(msm_ccmd_gem_cpu_prep_rsp, ret) == 4);

struct msm_ccmd_gem_set_name_req {
    vdrm_ccmd_req hdr;
    uint32_t res_id;
    uint32_t len; // string bytes, no NUL needed
    // uint8_t payload[]: padded to 4
};
static_assert(sizeof(msm_ccmd_gem_set_name_req) == 24);
static_assert(offsetof(msm_ccmd_gem_set_name_req, res_id) == 16);
static_assert(offsetof(msm_ccmd_gem_set_name_req, len) == 20);

struct msm_ccmd_gem_submit_req {
    vdrm_ccmd_req hdr;
    uint32_t flags;
    uint32_t queue_id;
    uint32_t nr_bos;
    uint32_t nr_cmds;
    uint32_t fence;
    // drm_msm_gem_submit_bo bos[nr_bos]; drm_msm_gem_submit_cmd cmds[nr_cmds];
};
static_assert(sizeof(msm_ccmd_gem_submit_req) == 36);
static_assert(offsetof(msm_ccmd_gem_submit_req, flags) == 16);
static_assert(offsetof(msm_ccmd_gem_submit_req, queue_id) == 20);
static_assert(offsetof(msm_ccmd_gem_submit_req, nr_bos) == 24);
static_assert(offsetof(msm_ccmd_gem_submit_req, nr_cmds) == 28);
static_assert(offsetof(msm_ccmd_gem_submit_req, fence) == 32);

struct msm_ccmd_gem_upload_req {
    vdrm_ccmd_req hdr;
    uint32_t res_id;
    uint32_t pad; // must be 0
    uint32_t off;
    uint32_t len;
    // uint8_t payload[]: padded to 4
};
static_assert(sizeof(msm_ccmd_gem_upload_req) == 32);
static_assert(offsetof(msm_ccmd_gem_upload_req, res_id) == 16);
static_assert(offsetof(msm_ccmd_gem_upload_req, pad) == 20);
static_assert(offsetof(msm_ccmd_gem_upload_req, off) == 24);
static_assert(offsetof(msm_ccmd_gem_upload_req, len) == 28);

struct msm_ccmd_submitqueue_query_req {
    vdrm_ccmd_req hdr;
    uint32_t queue_id;
    uint32_t param;
    uint32_t len;
};
static_assert(sizeof(msm_ccmd_submitqueue_query_req) == 28);
static_assert(offsetof(msm_ccmd_submitqueue_query_req, queue_id) == 16);
static_assert(offsetof(msm_ccmd_submitqueue_query_req, param) == 20);
static_assert(offsetof(msm_ccmd_submitqueue_query_req, len) == 24);

struct msm_ccmd_submitqueue_query_rsp {
    vdrm_ccmd_rsp hdr;
    int32_t ret;
    uint32_t out_len; // echoes the guest's len (§12)
    // uint8_t payload[]
};
static_assert(sizeof(msm_ccmd_submitqueue_query_rsp) == 12);
static_assert(offsetof(msm_ccmd_submitqueue_query_rsp, ret) == 4);
static_assert(offsetof(msm_ccmd_submitqueue_query_rsp, out_len) == 8);

struct msm_ccmd_wait_fence_req {
    vdrm_ccmd_req hdr;
    uint32_t queue_id;
    uint32_t fence;
};
static_assert(sizeof(msm_ccmd_wait_fence_req) == 24);
static_assert(offsetof(msm_ccmd_wait_fence_req, queue_id) == 16);
static_assert(offsetof(msm_ccmd_wait_fence_req, fence) == 20);

struct msm_ccmd_wait_fence_rsp {
    vdrm_ccmd_rsp hdr;
    int32_t ret;
};
static_assert(sizeof(msm_ccmd_wait_fence_rsp) == 8);
static_assert(offsetof(msm_ccmd_wait_fence_rsp, ret) == 4);

struct msm_ccmd_set_debuginfo_req {
    vdrm_ccmd_req hdr;
    uint32_t comm_len;
    uint32_t cmdline_len;
    // uint8_t payload[]: comm then cmdline, padded to 4
};
static_assert(sizeof(msm_ccmd_set_debuginfo_req) == 24);
static_assert(offsetof(msm_ccmd_set_debuginfo_req, comm_len) == 16);
static_assert(offsetof(msm_ccmd_set_debuginfo_req, cmdline_len) == 20);

// Fixed size of each request (variable parts follow), indexed by msm_ccmd; 0 = no such command.
inline constexpr uint32_t kCcmdFixedReqSize[MSM_CCMD_LAST] = {
    0,
    sizeof(msm_ccmd_nop_req),
    sizeof(msm_ccmd_ioctl_simple_req),
    sizeof(msm_ccmd_gem_new_req),
    sizeof(msm_ccmd_gem_set_iova_req),
    sizeof(msm_ccmd_gem_cpu_prep_req),
    sizeof(msm_ccmd_gem_set_name_req),
    sizeof(msm_ccmd_gem_submit_req),
    sizeof(msm_ccmd_gem_upload_req),
    sizeof(msm_ccmd_submitqueue_query_req),
    sizeof(msm_ccmd_wait_fence_req),
    sizeof(msm_ccmd_set_debuginfo_req),
};

const char* msm_ccmd_name(uint32_t cmd);

} // namespace fdnc::wire
