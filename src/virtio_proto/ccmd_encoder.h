// Typed builders for every MSM_CCMD request (PROTOCOL.md §5.4): hdr.cmd and hdr.len are set,
// variable payloads are zero-padded to 4 while their length fields carry the unpadded count.
// seqno and rsp_off stay 0: RequestBuffer assigns them (Q1, Q7). Plus small parsers for the
// responses the guest reads back.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "msm_ccmd.h"
#include "msm_uapi.h"

namespace fdnc::ccmd {

struct Encoded {
    std::vector<uint8_t> bytes; // the whole request, hdr.len bytes
    uint32_t rsp_size = 0;      // bytes of the response the host writes (0 = none)

    std::span<uint8_t> span() { return bytes; }
    std::span<const uint8_t> span() const { return bytes; }
    wire::vdrm_ccmd_req hdr() const;
    uint32_t seqno() const { return hdr().seqno; }
};

Encoded nop();
// arg is copied and zero-extended/truncated to _IOC_SIZE(ioctl) bytes; the host requires
// hdr.len == 20 + _IOC_SIZE exactly (§5.5).
Encoded ioctl_simple(uint32_t ioctl, std::span<const uint8_t> arg);
Encoded get_param(uint32_t param, uint32_t pipe = wire::MSM_PIPE_3D0); // §1.1: pipe 3D0, len 0
Encoded submitqueue_new(uint32_t flags, uint32_t prio);
Encoded submitqueue_close(uint32_t queue_id);
Encoded gem_new(uint64_t iova, uint64_t size, uint32_t flags, uint32_t blob_id);
Encoded gem_set_iova(uint32_t res_id, uint64_t iova);
Encoded gem_cpu_prep(uint32_t res_id, uint32_t op);
Encoded gem_set_name(uint32_t res_id, std::string_view name);
Encoded gem_submit(uint32_t flags, uint32_t queue_id, uint32_t fence,
                   std::span<const wire::drm_msm_gem_submit_bo> bos,
                   std::span<const wire::drm_msm_gem_submit_cmd> cmds);
Encoded gem_upload(uint32_t res_id, uint32_t off, std::span<const uint8_t> data);
Encoded submitqueue_query(uint32_t queue_id, uint32_t param, uint32_t len);
Encoded wait_fence(uint32_t queue_id, uint32_t fence);
Encoded set_debuginfo(std::string_view comm, std::string_view cmdline);

// Response parsing. `rsp` is what RequestBuffer::send_sync copied out of the slot; each returns
// false when the slot is too short to hold what is asked for (the host stored a shorter len, R3).
bool parse_ret(std::span<const uint8_t> rsp, int32_t* ret); // any rsp with `s32 ret @4`
bool parse_get_param(std::span<const uint8_t> rsp, int32_t* ret, uint64_t* value);
bool parse_submitqueue_new(std::span<const uint8_t> rsp, int32_t* ret, uint32_t* queue_id);

// Response buffer sizes to pass to send_sync.
inline constexpr uint32_t kGetParamRspSize =
    sizeof(wire::msm_ccmd_ioctl_simple_rsp) + sizeof(wire::drm_msm_param);
inline constexpr uint32_t kSubmitqueueNewRspSize =
    sizeof(wire::msm_ccmd_ioctl_simple_rsp) + sizeof(wire::drm_msm_submitqueue);
static_assert(kGetParamRspSize == 32 && kSubmitqueueNewRspSize == 20); // §5.4 table

} // namespace fdnc::ccmd
