// A minimal guest for driving MsmRenderer with real ccmd bytes (fdnc::ccmd encoders), a shared
// page and manual GPU time. Response slots: each request with a response gets its own slot.
#pragma once

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <tuple>
#include <vector>

#include "host_sim/msm_renderer.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/fdnc_ext.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::host::test {

using namespace fdnc::wire;
namespace cc = fdnc::ccmd;

inline constexpr uint64_t kGva = 0x1'0000'0000ull;

inline HostSimConfig manual_config(KernelEra era = KernelEra::Classic) {
    HostSimConfig c;
    c.kernel.clock = ClockMode::Manual;
    c.kernel.era = era;
    return c;
}

struct Guest {
    explicit Guest(HostSimConfig cfg = manual_config(), bool with_shmem = true) : host(std::move(cfg)) {
        host.set_fence_callback([this](uint32_t c, uint32_t r, uint64_t f) {
            std::lock_guard lk(mu);
            retired.emplace_back(c, r, f);
        });
        REQUIRE(host.context_create(ctx, VIRTGPU_CAPSET_DRM, 4) == 0);
        if (with_shmem)
            create_shmem();
    }

    void create_shmem() {
        shm_res = next_res++;
        REQUIRE(host.resource_create_blob(ctx, shm_res, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE,
                                          kShmemSize, 0) == 0);
        HostMapping m;
        REQUIRE(host.resource_map(ctx, shm_res, &m) == 0);
        shm = static_cast<uint8_t*>(m.ptr);
    }
    msm_shmem* page() const { return reinterpret_cast<msm_shmem*>(shm); }
    uint8_t* slot(uint32_t off) const { return shm + page()->base.rsp_mem_offset + off; }

    // Gives each request a seqno and (if it answers) a fresh slot with len pre-written (R3);
    // sends them as one batch. Returns submit_cmd's result.
    int send(std::vector<cc::Encoded*> reqs, uint32_t prewrite_len = UINT32_MAX) {
        std::vector<uint8_t> batch;
        for (auto* e : reqs) {
            auto* hdr = reinterpret_cast<vdrm_ccmd_req*>(e->bytes.data());
            hdr->seqno = ++seqno;
            if (e->rsp_size) {
                hdr->rsp_off = next_slot;
                uint32_t len = prewrite_len == UINT32_MAX ? e->rsp_size : prewrite_len;
                if (shm) {
                    std::memset(slot(next_slot), 0xAB, e->rsp_size);
                    std::memcpy(slot(next_slot), &len, 4);
                }
                next_slot += (e->rsp_size + 7) & ~7u;
                if (next_slot > 0x3000)
                    next_slot = 0;
            }
            batch.insert(batch.end(), e->bytes.begin(), e->bytes.end());
        }
        return host.submit_cmd(ctx, batch);
    }
    int send(cc::Encoded e) { return send({&e}); }
    template <class Rsp> Rsp rsp(const cc::Encoded& e) const {
        Rsp r{};
        std::memcpy(&r, slot(e.hdr().rsp_off), sizeof r);
        return r;
    }

    // GEM_NEW + blob create (Q4 order); returns the res_id (0 if the create failed).
    uint32_t new_bo(uint64_t iova, uint64_t size = 4096, uint32_t flags = MSM_BO_WC,
                    uint32_t blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE) {
        uint32_t blob_id = next_blob++;
        uint32_t res = next_res++;
        if (send(cc::gem_new(iova, size, flags, blob_id)) != 0)
            return 0;
        if (host.resource_create_blob(ctx, res, VIRTGPU_BLOB_MEM_HOST3D, blob_flags, (size + 4095) & ~4095ull,
                                      blob_id) != 0)
            return 0;
        return res;
    }
    uint32_t queue(uint32_t prio = 0) {
        auto e = cc::submitqueue_new(0, prio);
        REQUIRE(send(e) == 0);
        auto r = rsp<msm_ccmd_ioctl_simple_rsp>(e);
        REQUIRE(r.ret == 0);
        drm_msm_submitqueue q{};
        std::memcpy(&q, slot(e.hdr().rsp_off) + sizeof(msm_ccmd_ioctl_simple_rsp), sizeof q);
        return q.id;
    }
    struct Ref {
        uint32_t res_id;
        uint64_t presumed;
        uint32_t flags = MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE;
    };
    cc::Encoded submit_req(uint32_t q, uint32_t fence, std::vector<Ref> refs) {
        std::vector<drm_msm_gem_submit_bo> bos;
        for (auto& r : refs)
            bos.push_back({r.flags, r.res_id, r.presumed});
        std::vector<drm_msm_gem_submit_cmd> cmds{{MSM_SUBMIT_CMD_BUF, 0, 0, 64, 0, 0, 0}};
        return cc::gem_submit(MSM_PIPE_3D0, q, fence, bos, cmds);
    }
    int submit(uint32_t q, uint32_t fence, std::vector<Ref> refs) { return send(submit_req(q, fence, refs)); }
    uint32_t async_error() const { return page()->async_error; }
    uint32_t host_seqno() const { return page()->base.seqno; }
    size_t retired_count() {
        std::lock_guard lk(mu);
        return retired.size();
    }
    bool has_log(const std::string& needle) const {
        for (auto& l : host.log())
            if (l.find(needle) != std::string::npos)
                return true;
        return false;
    }

    MsmRenderer host;
    uint32_t ctx = 1;
    uint32_t shm_res = 0;
    uint8_t* shm = nullptr;
    uint32_t seqno = 0;
    uint32_t next_slot = 0;
    uint32_t next_res = 100;
    uint32_t next_blob = 1;
    std::mutex mu;
    std::vector<std::tuple<uint32_t, uint32_t, uint64_t>> retired;
};

} // namespace fdnc::host::test
