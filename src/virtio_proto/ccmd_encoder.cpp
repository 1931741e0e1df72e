#include "ccmd_encoder.h"

#include <algorithm>
#include <cstring>

#include "ccmd_decoder.h"
#include "ioctl_encoding.h"

namespace fdnc::ccmd {

namespace {

using namespace wire;

// A zeroed request of fixed + align4(payload) bytes with hdr.cmd/hdr.len set. Lengths are checked
// by the callers' types (u32 fields), so a payload past 4 GiB is truncated by them, not here.
Encoded make(uint32_t cmd, size_t fixed, size_t payload = 0) {
    Encoded e;
    const size_t len = fixed + ((payload + 3) & ~size_t{3});
    e.bytes.assign(len, 0);
    vdrm_ccmd_req hdr{cmd, static_cast<uint32_t>(len), 0, 0};
    std::memcpy(e.bytes.data(), &hdr, sizeof hdr);
    return e;
}

template <class T> void put(Encoded& e, size_t off, const T& v) {
    std::memcpy(e.bytes.data() + off, &v, sizeof v);
}

void put_bytes(Encoded& e, size_t off, const void* p, size_t n) {
    if (n) std::memcpy(e.bytes.data() + off, p, n);
}

// The response size as the host will compute it (one rule, in the decoder).
Encoded finish(Encoded e) {
    Ccmd c;
    c.cmd = e.hdr().cmd;
    c.bytes = e.bytes;
    e.rsp_size = ccmd_response_size(c);
    return e;
}

} // namespace

vdrm_ccmd_req Encoded::hdr() const {
    vdrm_ccmd_req h{};
    std::memcpy(&h, bytes.data(), std::min(bytes.size(), sizeof h));
    return h;
}

Encoded nop() { return make(MSM_CCMD_NOP, sizeof(msm_ccmd_nop_req)); }

Encoded ioctl_simple(uint32_t ioctl, std::span<const uint8_t> arg) {
    const size_t size = ioc_size(ioctl);
    Encoded e = make(MSM_CCMD_IOCTL_SIMPLE, sizeof(msm_ccmd_ioctl_simple_req), size);
    put(e, offsetof(msm_ccmd_ioctl_simple_req, cmd), ioctl);
    put_bytes(e, sizeof(msm_ccmd_ioctl_simple_req), arg.data(), std::min(size, arg.size()));
    return finish(std::move(e));
}

Encoded get_param(uint32_t param, uint32_t pipe) {
    drm_msm_param p{};
    p.pipe = pipe;
    p.param = param;
    return ioctl_simple(DRM_IOCTL_MSM_GET_PARAM, {reinterpret_cast<const uint8_t*>(&p), sizeof p});
}

Encoded submitqueue_new(uint32_t flags, uint32_t prio) {
    drm_msm_submitqueue q{flags, prio, 0};
    return ioctl_simple(DRM_IOCTL_MSM_SUBMITQUEUE_NEW, {reinterpret_cast<const uint8_t*>(&q), sizeof q});
}

Encoded submitqueue_close(uint32_t queue_id) {
    return ioctl_simple(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE,
                        {reinterpret_cast<const uint8_t*>(&queue_id), sizeof queue_id});
}

Encoded gem_new(uint64_t iova, uint64_t size, uint32_t flags, uint32_t blob_id) {
    Encoded e = make(MSM_CCMD_GEM_NEW, sizeof(msm_ccmd_gem_new_req));
    put(e, offsetof(msm_ccmd_gem_new_req, iova), iova);
    put(e, offsetof(msm_ccmd_gem_new_req, size), size);
    put(e, offsetof(msm_ccmd_gem_new_req, flags), flags);
    put(e, offsetof(msm_ccmd_gem_new_req, blob_id), blob_id);
    return e;
}

Encoded gem_set_iova(uint32_t res_id, uint64_t iova) {
    Encoded e = make(MSM_CCMD_GEM_SET_IOVA, sizeof(msm_ccmd_gem_set_iova_req));
    put(e, offsetof(msm_ccmd_gem_set_iova_req, iova), iova);
    put(e, offsetof(msm_ccmd_gem_set_iova_req, res_id), res_id);
    return e;
}

Encoded gem_cpu_prep(uint32_t res_id, uint32_t op) {
    Encoded e = make(MSM_CCMD_GEM_CPU_PREP, sizeof(msm_ccmd_gem_cpu_prep_req));
    put(e, offsetof(msm_ccmd_gem_cpu_prep_req, res_id), res_id);
    put(e, offsetof(msm_ccmd_gem_cpu_prep_req, op), op);
    return finish(std::move(e));
}

Encoded gem_set_name(uint32_t res_id, std::string_view name) {
    Encoded e = make(MSM_CCMD_GEM_SET_NAME, sizeof(msm_ccmd_gem_set_name_req), name.size());
    put(e, offsetof(msm_ccmd_gem_set_name_req, res_id), res_id);
    put(e, offsetof(msm_ccmd_gem_set_name_req, len), static_cast<uint32_t>(name.size()));
    put_bytes(e, sizeof(msm_ccmd_gem_set_name_req), name.data(), name.size());
    return e;
}

Encoded gem_submit(uint32_t flags, uint32_t queue_id, uint32_t fence, std::span<const drm_msm_gem_submit_bo> bos,
                   std::span<const drm_msm_gem_submit_cmd> cmds) {
    const size_t bo_bytes = bos.size_bytes(), cmd_bytes = cmds.size_bytes();
    Encoded e = make(MSM_CCMD_GEM_SUBMIT, sizeof(msm_ccmd_gem_submit_req), bo_bytes + cmd_bytes);
    put(e, offsetof(msm_ccmd_gem_submit_req, flags), flags);
    put(e, offsetof(msm_ccmd_gem_submit_req, queue_id), queue_id);
    put(e, offsetof(msm_ccmd_gem_submit_req, nr_bos), static_cast<uint32_t>(bos.size()));
    put(e, offsetof(msm_ccmd_gem_submit_req, nr_cmds), static_cast<uint32_t>(cmds.size()));
    put(e, offsetof(msm_ccmd_gem_submit_req, fence), fence);
    put_bytes(e, sizeof(msm_ccmd_gem_submit_req), bos.data(), bo_bytes);
    put_bytes(e, sizeof(msm_ccmd_gem_submit_req) + bo_bytes, cmds.data(), cmd_bytes);
    return e;
}

Encoded gem_upload(uint32_t res_id, uint32_t off, std::span<const uint8_t> data) {
    Encoded e = make(MSM_CCMD_GEM_UPLOAD, sizeof(msm_ccmd_gem_upload_req), data.size());
    put(e, offsetof(msm_ccmd_gem_upload_req, res_id), res_id);
    put(e, offsetof(msm_ccmd_gem_upload_req, off), off);
    put(e, offsetof(msm_ccmd_gem_upload_req, len), static_cast<uint32_t>(data.size()));
    put_bytes(e, sizeof(msm_ccmd_gem_upload_req), data.data(), data.size());
    return e;
}

Encoded submitqueue_query(uint32_t queue_id, uint32_t param, uint32_t len) {
    Encoded e = make(MSM_CCMD_SUBMITQUEUE_QUERY, sizeof(msm_ccmd_submitqueue_query_req));
    put(e, offsetof(msm_ccmd_submitqueue_query_req, queue_id), queue_id);
    put(e, offsetof(msm_ccmd_submitqueue_query_req, param), param);
    put(e, offsetof(msm_ccmd_submitqueue_query_req, len), len);
    return finish(std::move(e));
}

Encoded wait_fence(uint32_t queue_id, uint32_t fence) {
    Encoded e = make(MSM_CCMD_WAIT_FENCE, sizeof(msm_ccmd_wait_fence_req));
    put(e, offsetof(msm_ccmd_wait_fence_req, queue_id), queue_id);
    put(e, offsetof(msm_ccmd_wait_fence_req, fence), fence);
    return finish(std::move(e));
}

Encoded set_debuginfo(std::string_view comm, std::string_view cmdline) {
    Encoded e = make(MSM_CCMD_SET_DEBUGINFO, sizeof(msm_ccmd_set_debuginfo_req), comm.size() + cmdline.size());
    put(e, offsetof(msm_ccmd_set_debuginfo_req, comm_len), static_cast<uint32_t>(comm.size()));
    put(e, offsetof(msm_ccmd_set_debuginfo_req, cmdline_len), static_cast<uint32_t>(cmdline.size()));
    put_bytes(e, sizeof(msm_ccmd_set_debuginfo_req), comm.data(), comm.size());
    put_bytes(e, sizeof(msm_ccmd_set_debuginfo_req) + comm.size(), cmdline.data(), cmdline.size());
    return e;
}

bool parse_ret(std::span<const uint8_t> rsp, int32_t* ret) {
    if (rsp.size() < 8) return false;
    std::memcpy(ret, rsp.data() + 4, sizeof *ret);
    return true;
}

bool parse_get_param(std::span<const uint8_t> rsp, int32_t* ret, uint64_t* value) {
    if (rsp.size() < kGetParamRspSize || !parse_ret(rsp, ret)) return false;
    drm_msm_param p;
    std::memcpy(&p, rsp.data() + sizeof(msm_ccmd_ioctl_simple_rsp), sizeof p);
    *value = p.value;
    return true;
}

bool parse_submitqueue_new(std::span<const uint8_t> rsp, int32_t* ret, uint32_t* queue_id) {
    if (rsp.size() < kSubmitqueueNewRspSize || !parse_ret(rsp, ret)) return false;
    drm_msm_submitqueue q;
    std::memcpy(&q, rsp.data() + sizeof(msm_ccmd_ioctl_simple_rsp), sizeof q);
    *queue_id = q.id;
    return true;
}

} // namespace fdnc::ccmd
