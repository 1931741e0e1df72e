// The generic native-context request/response headers and the shared-memory page,
// PROTOCOL.md §5.2-5.3 (virglrenderer drm_hw.h / Mesa vdrm).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fdnc::wire {

struct vdrm_ccmd_req {
    uint32_t cmd;
    uint32_t len;     // whole request incl. this header; multiple of 4, >= 16
    uint32_t seqno;   // guest-assigned; compare with a signed difference (wraps)
    uint32_t rsp_off; // offset of the response slot inside the response area
};
static_assert(sizeof(vdrm_ccmd_req) == 16);
static_assert(offsetof(vdrm_ccmd_req, cmd) == 0);
static_assert(offsetof(vdrm_ccmd_req, len) == 4);
static_assert(offsetof(vdrm_ccmd_req, seqno) == 8);
static_assert(offsetof(vdrm_ccmd_req, rsp_off) == 12);

struct vdrm_ccmd_rsp {
    uint32_t len; // pre-written by the guest with the slot size; the host stores min(guest, host) (R3)
};
static_assert(sizeof(vdrm_ccmd_rsp) == 4);

struct vdrm_shmem {
    uint32_t seqno;          // last request the host finished, written after its response (R4)
    uint32_t rsp_mem_offset; // start of the response area, written by the host at creation
};
static_assert(sizeof(vdrm_shmem) == 8);
static_assert(offsetof(vdrm_shmem, seqno) == 0);
static_assert(offsetof(vdrm_shmem, rsp_mem_offset) == 4);

struct msm_shmem {
    vdrm_shmem base;
    uint32_t async_error;   // grows on failures the guest cannot see synchronously (§6.4a)
    uint32_t global_faults; // host copy of MSM_PARAM_FAULTS, refreshed on fence retire (F6)
};
static_assert(sizeof(msm_shmem) == 16);
static_assert(offsetof(msm_shmem, base) == 0);
static_assert(offsetof(msm_shmem, async_error) == 8);
static_assert(offsetof(msm_shmem, global_faults) == 12);

// Field-presence rule for older hosts: a field exists iff rsp_mem_offset > its offset.
constexpr bool shmem_has_field(uint32_t rsp_mem_offset, size_t field_offset) {
    return rsp_mem_offset > field_offset;
}

inline constexpr uint32_t kShmemSize = 0x4000;       // Mesa's choice; host needs >= 8
inline constexpr uint32_t kShmemRspMemOffset = 16;   // what virglrenderer 1.3 writes
inline constexpr uint32_t kShmemBlobId = 0;          // B7: blob_id 0 is the shared page
inline constexpr uint32_t kRequestBufferSize = 0x4000; // Q2: one buffered request fits in this

} // namespace fdnc::wire
