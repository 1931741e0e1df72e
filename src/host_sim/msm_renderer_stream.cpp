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
// fences (§6.5)

int MsmRenderer::context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) {
    FenceList fire_now;
    {
        std::lock_guard lk(mu_);
        Context* c = ctx_locked(ctx_id);
        if (!c) {
            logf("fence: unknown context %u", ctx_id);
            return -EINVAL;
        }
        if (ring_idx > c->timeline_last.size()) { // F4
            logf("fence: invalid ring_idx %u", ring_idx);
            return -EINVAL;
        }
        uint64_t seq = ring_idx ? c->timeline_last[ring_idx - 1] : 0;
        if (ring_idx)
            c->timeline_last[ring_idx - 1] = 0; // the stored fence is consumed
        // Ring 0 (host CPU) or nothing pending on the timeline: retired at once (F4).
        c->pending.push_back({ring_idx, fence_id, seq});
        collect_retired_locked(*c, fire_now);
    }
    fire(fire_now);
    return 0;
}

// Retires, per ring and in order, the fences whose GPU work is done; F6 on every GPU timeline retire.
void MsmRenderer::collect_retired_locked(Context& c, FenceList& out) {
    std::vector<bool> blocked(c.timeline_last.size() + 1, false);
    bool refreshed = false;
    for (auto it = c.pending.begin(); it != c.pending.end();) {
        if (blocked[it->ring]) {
            ++it;
            continue;
        }
        if (it->submit_seq && !kernel_->submit_retired(it->submit_seq)) {
            blocked[it->ring] = true;
            ++it;
            continue;
        }
        if (it->ring && !refreshed) {
            refresh_faults_locked(c);
            refreshed = true;
        }
        out.emplace_back(c.id, it->ring, it->fence_id);
        it = c.pending.erase(it);
    }
}

void MsmRenderer::refresh_faults_locked(Context& c) {
    if (!c.shmem)
        return;
    drm_msm_param p{MSM_PIPE_3D0, MSM_PARAM_FAULTS, 0, 0, 0};
    if (kernel_->get_param(c.file, p) == 0)
        __atomic_store_n(&c.page()->global_faults, uint32_t(p.value), __ATOMIC_RELEASE);
}

void MsmRenderer::on_kernel_retire() {
    FenceList out;
    {
        std::lock_guard lk(mu_);
        for (auto& [id, c] : contexts_)
            collect_retired_locked(*c, out);
    }
    fire(out);
}

void MsmRenderer::fire(const FenceList& fences) {
    if (fences.empty())
        return;
    HostFenceCallback cb;
    {
        std::lock_guard lk(mu_);
        cb = fence_cb_;
    }
    if (!cb)
        return;
    for (auto& [ctx, ring, id] : fences)
        cb(ctx, ring, id);
}

// ---------------------------------------------------------------------------------------------
// the ccmd stream (§6.1, §6.3)

int MsmRenderer::submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c) {
        logf("submit_cmd: unknown context %u", ctx_id);
        return -EINVAL;
    }
    return run_stream(*c, cmd);
}

int MsmRenderer::run_stream(Context& c, std::span<const uint8_t> cmd) {
    size_t base = 0;
    for (;;) {
        CcmdDecoder dec(cmd.subspan(base), c.rsp_area_size());
        Ccmd rec;
        while (dec.next(&rec)) {
            const HandlerEntry& h = kHandlers[rec.cmd];
            // Private, zero-extended copy before use (H5; no TOCTOU on guest memory).
            const size_t req_len = std::max<size_t>(h.size, rec.bytes.size());
            if (req_buf_.size() < req_len)
                req_buf_.resize(req_len);
            std::memcpy(req_buf_.data(), rec.bytes.data(), rec.bytes.size());
            std::memset(req_buf_.data() + rec.bytes.size(), 0, req_len - rec.bytes.size());
            if (rsp_buf_.size() < rec.rsp_size)
                rsp_buf_.resize(rec.rsp_size);
            if (rec.rsp_size) // R3: built in a zeroed buffer
                std::memset(rsp_buf_.data(), 0, rec.rsp_size);
            std::span<const uint8_t> req(req_buf_.data(), req_len);
            std::span<uint8_t> rsp(rsp_buf_.data(), rec.rsp_size);
            int r = (this->*h.fn)(c, rec, req, rsp);
            if (r) { // H6
                logf("ctx %u: %s (seqno %u) failed with %d: rest of the batch dropped", c.id, h.name,
                     rec.seqno, r);
                return r;
            }
            if (c.shmem) { // H7 / H8
                if (rec.rsp_size)
                    write_response(c, rec.rsp_off, rsp);
                store_seqno(c, rec.seqno);
            }
        }
        if (dec.error() == DecodeError::None)
            return 0;
        size_t at = base + dec.error_offset();
        // fdnc's own extension record (fdnc_ext.h) is unknown to the shared decoder: frame it here.
        if (dec.error() == DecodeError::UnknownCmd && cfg_.fdnc_extensions &&
            load<uint32_t>(cmd, at) == FDNC_CCMD_GEM_GET_IOVA) {
            uint32_t len = load<uint32_t>(cmd, at + 4); // H2 already passed for this record
            int r = run_fdnc_get_iova(c, cmd.subspan(at, len));
            if (r) {
                logf("ctx %u: FDNC_GEM_GET_IOVA failed with %d: rest of the batch dropped", c.id, r);
                return r;
            }
            base = at + len;
            continue;
        }
        logf("ctx %u: malformed ccmd at byte %zu: %s; rest of the batch dropped", c.id, at,
             decode_error_name(dec.error()));
        return dec.error() == DecodeError::RspOffOutOfRange ? -ENOMEM : -EINVAL; // R2 / H2-H4
    }
}

// R3: copy min(guest-written len, host size) bytes and store that length.
void MsmRenderer::write_response(Context& c, uint32_t rsp_off, std::span<const uint8_t> rsp) {
    uint8_t* slot = c.shmem + kShmemRspMemOffset + rsp_off;
    uint32_t guest_len = 0;
    std::memcpy(&guest_len, slot, sizeof guest_len);
    uint32_t n = std::min<uint32_t>(guest_len, uint32_t(rsp.size()));
    if (n > sizeof(uint32_t))
        std::memcpy(slot + sizeof(uint32_t), rsp.data() + sizeof(uint32_t), n - sizeof(uint32_t));
    __atomic_store_n(reinterpret_cast<uint32_t*>(slot), n, __ATOMIC_RELEASE);
}

void MsmRenderer::store_seqno(Context& c, uint32_t seqno) {
    __atomic_exchange_n(&c.page()->base.seqno, seqno, __ATOMIC_SEQ_CST); // R4
}

void MsmRenderer::async_error_locked(Context& c, const std::string& why) {
    logf("ctx %u: async_error: %s", c.id, why.c_str());
    if (c.shmem) // E4: only with a shared page
        __atomic_fetch_add(&c.page()->async_error, 1u, __ATOMIC_SEQ_CST);
}

void MsmRenderer::raise_async_error(uint32_t ctx_id) {
    std::lock_guard lk(mu_);
    if (Context* c = ctx_locked(ctx_id))
        async_error_locked(*c, "injected");
}

} // namespace fdnc::host
