// Helpers for driving MsmKernel directly (manual clock unless a test says otherwise).
#pragma once

#include <catch2/catch.hpp>
#include <cerrno>
#include <vector>

#include "host_sim/msm_kernel.h"

namespace fdnc::host::test {

using namespace fdnc::wire;

inline constexpr uint64_t kVa = 0x1'0000'0000ull;

struct KernelFixture {
    explicit KernelFixture(KernelConfig cfg = {}) : k(cfg), f(k.open_file()) {}

    uint32_t bo(uint64_t size, uint32_t flags = MSM_BO_WC) {
        drm_msm_gem_new a{size, flags, 0};
        REQUIRE(k.gem_new(f, a) == 0);
        return a.handle;
    }
    int set_iova(uint32_t h, uint64_t iova, FileId file = 0) {
        drm_msm_gem_info a{h, MSM_INFO_SET_IOVA, iova, 0, 0};
        return k.gem_info(file ? file : f, a);
    }
    int get_iova(uint32_t h, uint64_t* iova) {
        drm_msm_gem_info a{h, MSM_INFO_GET_IOVA, 0, 0, 0};
        int r = k.gem_info(f, a);
        *iova = a.value;
        return r;
    }
    uint32_t queue(uint32_t prio = 0) {
        drm_msm_submitqueue q{0, prio, 0};
        REQUIRE(k.submitqueue_new(f, q) == 0);
        return q.id;
    }
    struct BoRef {
        uint32_t handle;
        uint64_t presumed;
        uint32_t flags = MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE;
    };
    // One cmd buffer (the first bo, first 64 bytes) referencing every bo.
    int submit(uint32_t q, uint32_t fence, std::vector<BoRef> refs, uint32_t extra_flags = 0,
               std::vector<drm_msm_gem_submit_cmd> cmds = {{MSM_SUBMIT_CMD_BUF, 0, 0, 64, 0, 0, 0}}) {
        std::vector<drm_msm_gem_submit_bo> bos;
        for (auto& r : refs)
            bos.push_back({r.flags, r.handle, r.presumed});
        drm_msm_gem_submit a{};
        a.flags = MSM_PIPE_3D0 | MSM_SUBMIT_FENCE_SN_IN | extra_flags;
        a.fence = fence;
        a.nr_bos = uint32_t(bos.size());
        a.nr_cmds = uint32_t(cmds.size());
        a.queueid = q;
        return k.gem_submit(f, a, bos, cmds);
    }
    int wait(uint32_t q, uint32_t fence) {
        drm_msm_wait_fence w{};
        w.fence = fence;
        w.queueid = q;
        return k.wait_fence(f, w);
    }
    int cpu_prep(uint32_t h, uint32_t op) {
        drm_msm_gem_cpu_prep a{h, op, {0, 0}};
        return k.gem_cpu_prep(f, a);
    }

    MsmKernel k;
    FileId f;
};

} // namespace fdnc::host::test
