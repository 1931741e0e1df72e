#include "host_sim/msm_renderer.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host_sim/msm_renderer_internal.h"
#include "virtio_proto/fdnc_ext_wire.h"
#include "virtio_proto/ioctl_encoding.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::host {

using namespace fdnc::wire;
using namespace renderer_detail;

// ---------------------------------------------------------------------------------------------
// handlers (§6.4)

int MsmRenderer::h_nop(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>) { return 0; }

int MsmRenderer::h_ioctl_simple(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    const uint32_t ioc = load<uint32_t>(req, offsetof(msm_ccmd_ioctl_simple_req, cmd));
    const uint32_t size = ioc_size(ioc);
    const uint32_t nr = ioc_nr(ioc) - kDrmCommandBase;
    if (ioc_type(ioc) != kDrmIoctlType || size > kIoctlSimplePayloadMax ||
        req.size() < sizeof(msm_ccmd_ioctl_simple_req) + size) {
        logf("IOCTL_SIMPLE 0x%08x refused", ioc);
        return -EINVAL;
    }
    uint8_t buf[kIoctlSimplePayloadMax] = {};
    std::memcpy(buf, req.data() + sizeof(msm_ccmd_ioctl_simple_req), size);
    std::span<uint8_t> arg(buf, size);
    int r;
    if (nr == DRM_MSM_GET_PARAM && size == sizeof(drm_msm_param)) {
        auto p = load<drm_msm_param>(arg);
        r = kernel_->get_param(c.file, p);
        put(arg, p);
    } else if (nr == DRM_MSM_SUBMITQUEUE_NEW && size == sizeof(drm_msm_submitqueue)) {
        auto q = load<drm_msm_submitqueue>(arg);
        r = kernel_->submitqueue_new(c.file, q);
        if (r == 0)
            c.queue_prio[q.id] = q.prio; // F2
        put(arg, q);
    } else if (nr == DRM_MSM_SUBMITQUEUE_CLOSE && size == sizeof(uint32_t)) {
        r = kernel_->submitqueue_close(c.file, load<uint32_t>(arg));
    } else { // §5.5 allow-list
        logf("IOCTL_SIMPLE 0x%08x not allowed", ioc);
        return -EINVAL;
    }
    put(rsp, int32_t(r == 0 ? 0 : -1), offsetof(msm_ccmd_ioctl_simple_rsp, ret)); // errno is lost
    if (ioc_dir(ioc) & kIocRead)
        std::memcpy(rsp.data() + sizeof(msm_ccmd_ioctl_simple_rsp), buf,
                    std::min<size_t>(size, rsp.size() - sizeof(msm_ccmd_ioctl_simple_rsp)));
    return 0;
}

// B2-B5, E1: any failure counts an async error and aborts the rest of the stream.
int MsmRenderer::h_gem_new(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_new_req>(req);
    char why[160];
    if (r.blob_id == 0 || c.blobs.count(r.blob_id)) {
        snprintf(why, sizeof why, "GEM_NEW: invalid blob_id %u", r.blob_id);
        async_error_locked(c, why);
        return -EINVAL;
    }
    drm_msm_gem_new gn{r.size, r.flags, 0};
    if (int e = kernel_->gem_new(c.file, gn)) {
        snprintf(why, sizeof why, "GEM_NEW: kernel GEM_NEW(size %llu, flags 0x%x) failed: %d",
                 (unsigned long long)r.size, r.flags, e);
        async_error_locked(c, why);
        return e;
    }
    drm_msm_gem_info gi{gn.handle, MSM_INFO_SET_IOVA, r.iova, 0, 0};
    if (int e = kernel_->gem_info(c.file, gi)) {
        kernel_->gem_close(c.file, gn.handle);
        snprintf(why, sizeof why, "GEM_NEW: SET_IOVA(0x%llx) failed: %d", (unsigned long long)r.iova, e);
        async_error_locked(c, why);
        return e;
    }
    c.blobs[r.blob_id] = {gn.handle, r.size, r.flags};
    return 0;
}

// E2: failures only count an async error; the stream goes on.
int MsmRenderer::h_gem_set_iova(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_set_iova_req>(req);
    char why[160];
    uint32_t handle = handle_of(c, r.res_id);
    if (!handle) {
        snprintf(why, sizeof why, "GEM_SET_IOVA: unknown res_id %u", r.res_id);
        async_error_locked(c, why);
        return 0;
    }
    drm_msm_gem_info gi{handle, MSM_INFO_SET_IOVA, r.iova, 0, 0};
    if (int e = kernel_->gem_info(c.file, gi)) {
        snprintf(why, sizeof why, "GEM_SET_IOVA(res %u, 0x%llx) failed: %d", r.res_id,
                 (unsigned long long)r.iova, e);
        async_error_locked(c, why);
    }
    return 0;
}

int MsmRenderer::h_gem_cpu_prep(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_gem_cpu_prep_req>(req);
    drm_msm_gem_cpu_prep a{};
    a.handle = handle_of(c, r.res_id);
    a.op = r.op | MSM_PREP_NOSYNC; // never blocks the host
    if (kernel_->config().drm_minor >= 11)
        a.op |= MSM_PREP_BOOST;
    a.timeout = mono_now();
    put(rsp, int32_t(kernel_->gem_cpu_prep(c.file, a)), offsetof(msm_ccmd_gem_cpu_prep_rsp, ret));
    return 0;
}

int MsmRenderer::h_gem_set_name(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_set_name_req>(req);
    if (uint64_t(r.len) > req.size() - sizeof(msm_ccmd_gem_set_name_req)) {
        logf("GEM_SET_NAME: len %u past the request", r.len);
        return -EINVAL;
    }
    std::vector<uint8_t> name(req.begin() + sizeof(msm_ccmd_gem_set_name_req),
                              req.begin() + sizeof(msm_ccmd_gem_set_name_req) + r.len);
    drm_msm_gem_info gi{handle_of(c, r.res_id), MSM_INFO_SET_NAME, 1, r.len, 0};
    if (int e = kernel_->gem_info(c.file, gi, name))
        logf("GEM_SET_NAME(res %u): %d (ignored)", r.res_id, e);
    return 0;
}

// E3: a kernel failure counts an async error; the stream goes on. F3: the last fence per timeline.
int MsmRenderer::h_gem_submit(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_submit_req>(req);
    const uint64_t need = sizeof(r) + uint64_t(r.nr_bos) * sizeof(drm_msm_gem_submit_bo) +
                          uint64_t(r.nr_cmds) * sizeof(drm_msm_gem_submit_cmd);
    if (need > req.size()) {
        logf("GEM_SUBMIT: %u bos + %u cmds do not fit in %zu bytes", r.nr_bos, r.nr_cmds, req.size());
        return -ENOSPC;
    }
    std::vector<drm_msm_gem_submit_bo> bos(r.nr_bos);
    std::vector<drm_msm_gem_submit_cmd> cmds(r.nr_cmds);
    size_t off = sizeof(r);
    for (auto& b : bos) {
        b = load<drm_msm_gem_submit_bo>(req, off);
        b.handle = handle_of(c, b.handle); // res_id -> GEM handle (B17)
        off += sizeof(b);
    }
    for (auto& cm : cmds) {
        cm = load<drm_msm_gem_submit_cmd>(req, off);
        off += sizeof(cm);
    }
    drm_msm_gem_submit a{};
    a.flags = r.flags | MSM_SUBMIT_FENCE_FD_OUT | MSM_SUBMIT_FENCE_SN_IN;
    a.fence = r.fence;
    a.nr_bos = r.nr_bos;
    a.nr_cmds = r.nr_cmds;
    a.queueid = r.queue_id;
    a.fence_fd = -1;
    uint64_t seq = 0;
    if (int e = kernel_->gem_submit(c.file, a, bos, cmds, &seq)) {
        char why[128];
        snprintf(why, sizeof why, "GEM_SUBMIT(queue %u, fence %u) failed: %d", r.queue_id, r.fence, e);
        async_error_locked(c, why);
        return 0;
    }
    auto prio = c.queue_prio.find(r.queue_id);
    if (prio == c.queue_prio.end() || prio->second >= c.timeline_last.size()) {
        logf("GEM_SUBMIT: unknown submitqueue %u (out-fence leaked)", r.queue_id); // F3
        return 0;
    }
    c.timeline_last[prio->second] = seq;
    return 0;
}

int MsmRenderer::h_gem_upload(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_upload_req>(req);
    if (r.pad != 0 || uint64_t(r.len) > req.size() - sizeof(r)) {
        logf("GEM_UPLOAD: malformed (pad %u, len %u)", r.pad, r.len);
        return -EINVAL;
    }
    auto it = c.resources.find(r.res_id);
    if (it == c.resources.end() || it->second.kind != Resource::Kind::Gem) {
        logf("GEM_UPLOAD: unknown res_id %u", r.res_id);
        return -ENOENT;
    }
    if (uint64_t(r.off) + r.len > it->second.size) {
        logf("GEM_UPLOAD: [%u, +%u) past res %u's size %llu", r.off, r.len, r.res_id,
             (unsigned long long)it->second.size);
        return -EFAULT;
    }
    if (int e = map_locked(c, it->second)) {
        logf("GEM_UPLOAD: mmap of res %u failed: %d", r.res_id, e);
        return e;
    }
    std::memcpy(static_cast<uint8_t*>(it->second.map) + r.off, req.data() + sizeof(r), r.len);
    return 0;
}

int MsmRenderer::h_submitqueue_query(Context& c, const Ccmd&, std::span<const uint8_t> req,
                                     std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_submitqueue_query_req>(req);
    drm_msm_submitqueue_query q{};
    q.id = r.queue_id;
    q.param = r.param;
    q.len = r.len;
    q.data = 1; // "a user pointer": the response payload
    const size_t hdr = sizeof(msm_ccmd_submitqueue_query_rsp);
    int e = kernel_->submitqueue_query(c.file, q, rsp.subspan(hdr));
    put(rsp, int32_t(e), offsetof(msm_ccmd_submitqueue_query_rsp, ret));
    put(rsp, r.len, offsetof(msm_ccmd_submitqueue_query_rsp, out_len)); // _IOW: echoes the guest's len
    return 0;
}

int MsmRenderer::h_wait_fence(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_wait_fence_req>(req);
    drm_msm_wait_fence w{};
    w.fence = r.fence;
    w.queueid = r.queue_id;
    w.timeout = mono_now(); // non-blocking
    if (kernel_->config().drm_minor >= 11)
        w.flags = MSM_WAIT_FENCE_BOOST;
    put(rsp, int32_t(kernel_->wait_fence(c.file, w)), offsetof(msm_ccmd_wait_fence_rsp, ret));
    return 0;
}

int MsmRenderer::h_set_debuginfo(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_set_debuginfo_req>(req);
    const size_t fixed = sizeof(r);
    if (uint64_t(r.comm_len) + r.cmdline_len > req.size() - fixed) {
        logf("SET_DEBUGINFO: lengths %u+%u past the request", r.comm_len, r.cmdline_len);
        return -ENOSPC;
    }
    auto payload = req.subspan(fixed);
    drm_msm_param comm{MSM_PIPE_3D0, MSM_PARAM_COMM, 1, r.comm_len, 0};
    kernel_->set_param(c.file, comm, payload.subspan(0, r.comm_len)); // errors ignored
    drm_msm_param cmdline{MSM_PIPE_3D0, MSM_PARAM_CMDLINE, 1, r.cmdline_len, 0};
    kernel_->set_param(c.file, cmdline, payload.subspan(r.comm_len, r.cmdline_len));
    return 0;
}

// FDNC_CCMD_GEM_GET_IOVA (fdnc_ext.h): the old host-chosen-iova path, for baselines only.
int MsmRenderer::run_fdnc_get_iova(Context& c, std::span<const uint8_t> rec) {
    auto r = load<fdnc_ccmd_gem_get_iova_req>(rec);
    const uint32_t rsp_size = sizeof(fdnc_ccmd_gem_get_iova_rsp);
    if (!c.shmem || uint64_t(r.hdr.rsp_off) + rsp_size > c.rsp_area_size()) {
        logf("FDNC_GEM_GET_IOVA: rsp_off %u out of range", r.hdr.rsp_off);
        return -ENOMEM;
    }
    fdnc_ccmd_gem_get_iova_rsp rsp{};
    drm_msm_gem_info gi{handle_of(c, r.res_id), MSM_INFO_GET_IOVA, 0, 0, 0};
    rsp.ret = kernel_->gem_info(c.file, gi);
    rsp.iova = rsp.ret == 0 ? gi.value : 0;
    write_response(c, r.hdr.rsp_off, {reinterpret_cast<const uint8_t*>(&rsp), rsp_size});
    store_seqno(c, r.hdr.seqno);
    return 0;
}

} // namespace fdnc::host
