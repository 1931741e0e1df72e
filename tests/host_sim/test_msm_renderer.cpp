// MsmRenderer: capset, stream rules (H/R), blobs (B), async errors (E) and fences (F), driven with
// real ccmd bytes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include "guest_fixture.h"

using namespace fdnc;
using namespace fdnc::host;
using namespace fdnc::host::test;
using namespace fdnc::wire;

TEST_CASE("The capset is VR13's: wire format 2, msm 1.12, context type 1, kernel values and bool encodings (4.4)") {
    MsmRenderer host(manual_config());
    virgl_renderer_capset_drm cs{};
    REQUIRE(host.get_capset(VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&cs), sizeof cs}) == 160);
    CHECK(cs.wire_format_version == 2);
    CHECK(cs.version_major == 1);
    CHECK(cs.version_minor == 12);
    CHECK(cs.context_type == VIRTGPU_DRM_CONTEXT_MSM);
    CHECK(cs.u.msm.va_start == 0x1'0000'0000ull);
    CHECK(cs.u.msm.va_size == 0x1'0000'0000ull);
    CHECK(cs.u.msm.gpu_id == 630);
    CHECK(cs.u.msm.chip_id == 0x06030001);
    CHECK(cs.u.msm.gmem_size == 1u << 20);
    CHECK(cs.u.msm.gmem_base == 0x100000);
    CHECK(cs.u.msm.priorities == 3);
    CHECK(cs.u.msm.has_cached_coherent == 1);
    CHECK(cs.u.msm.has_preemption == VIRTGPU_CAP_BOOL_FALSE);
    CHECK(cs.u.msm.has_raytracing == VIRTGPU_CAP_BOOL_FALSE);
    CHECK(host.live_objects() == 0); // the probe's objects are gone
}

TEST_CASE("The capset follows the kernel: VA range, GPU ids, no coherency, preemption") {
    HostSimConfig cfg = manual_config();
    cfg.kernel.va_start = 0x8'0000'0000ull;
    cfg.kernel.va_size = 0x4'0000'0000ull;
    cfg.kernel.gpu.gpu_id = 0;
    cfg.kernel.gpu.chip_id = 0x43050a01;
    cfg.kernel.gpu.has_cached_coherent = false;
    cfg.kernel.gpu.has_preemption = true;
    MsmRenderer host(cfg);
    auto cs = host.capset();
    CHECK(cs.u.msm.va_start == 0x8'0000'0000ull);
    CHECK(cs.u.msm.va_size == 0x4'0000'0000ull);
    CHECK(cs.u.msm.gpu_id == 0);
    CHECK(cs.u.msm.chip_id == 0x43050a01);
    CHECK(cs.u.msm.has_cached_coherent == 0);
    CHECK(cs.u.msm.has_preemption == VIRTGPU_CAP_BOOL_TRUE);
}

TEST_CASE("A Mesa 24.2 guest asking 80 bytes gets the first 80 and the host size") {
    MsmRenderer host(manual_config());
    std::vector<uint8_t> buf(kMesa242CapsetSize, 0);
    CHECK(host.get_capset(VIRTGPU_CAPSET_DRM, 0, buf) == 160);
    uint32_t v = 0;
    std::memcpy(&v, buf.data(), 4);
    CHECK(v == 2);
    CHECK(host.get_capset(1, 0, buf) == -ENOENT);
}

TEST_CASE("No DRM capset when the kernel lacks FENCE_SN_IN (minor < 9) or a VA range (4.4 steps 2, 8)") {
    HostSimConfig old = manual_config();
    old.kernel.drm_minor = 8;
    MsmRenderer a(old);
    std::vector<uint8_t> buf(160);
    CHECK(a.get_capset(VIRTGPU_CAPSET_DRM, 0, buf) == -ENOENT);
    CHECK(a.context_create(1, VIRTGPU_CAPSET_DRM, 4) == -ENODEV);
    HostSimConfig nova = manual_config();
    nova.kernel.va_size = 0;
    MsmRenderer b(nova);
    CHECK(b.get_capset(VIRTGPU_CAPSET_DRM, 0, buf) == -ENOENT);
}

TEST_CASE("The shared page is exactly-MAPPABLE blob 0, zeroed, rsp_mem_offset 16, one per context (5.3)") {
    Guest g(manual_config(), false);
    CHECK(g.host.resource_create_blob(g.ctx, 5, VIRTGPU_BLOB_MEM_HOST3D,
                                      VIRTGPU_BLOB_FLAG_USE_MAPPABLE | VIRTGPU_BLOB_FLAG_USE_SHAREABLE, 0x4000,
                                      0) == -EINVAL);
    g.create_shmem();
    CHECK(g.page()->base.rsp_mem_offset == 16);
    CHECK(g.page()->base.seqno == 0);
    CHECK(g.page()->async_error == 0);
    CHECK(g.page()->global_faults == 0);
    bool zero = true;
    for (uint32_t i = 16; i < kShmemSize; i++)
        zero &= g.shm[i] == 0;
    CHECK(zero);
    CHECK(g.host.resource_create_blob(g.ctx, 6, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 0x4000,
                                      0) == -EINVAL);
}

TEST_CASE("Every successful ccmd advances shmem.seqno, with or without a response (H7)") {
    Guest g;
    auto a = cc::nop();
    auto b = cc::get_param(MSM_PARAM_GPU_ID);
    REQUIRE(g.send({&a, &b}) == 0);
    CHECK(g.host_seqno() == 2);
    auto r = g.rsp<msm_ccmd_ioctl_simple_rsp>(b);
    CHECK(r.hdr.len == 32);
    CHECK(r.ret == 0);
    drm_msm_param p{};
    std::memcpy(&p, g.slot(b.hdr().rsp_off) + 8, sizeof p);
    CHECK(p.value == 630);
}

TEST_CASE("A response copies min(guest-prewritten len, host size) bytes and stores that len (R3)") {
    Guest g;
    auto b = cc::get_param(MSM_PARAM_GPU_ID);
    REQUIRE(g.send({&b}, 8) == 0);
    auto r = g.rsp<msm_ccmd_ioctl_simple_rsp>(b);
    CHECK(r.hdr.len == 8);
    CHECK(r.ret == 0);
    CHECK(g.slot(b.hdr().rsp_off)[8] == 0xAB); // payload not copied
    auto c = cc::get_param(MSM_PARAM_GPU_ID);
    REQUIRE(g.send({&c}, 0) == 0);
    CHECK(g.rsp<msm_ccmd_ioctl_simple_rsp>(c).hdr.len == 0); // nothing for a guest that did not prewrite
}

TEST_CASE("A failing handler aborts the rest of the batch and does not advance seqno (H6)") {
    Guest g;
    auto a = cc::nop();
    auto bad = cc::gem_new(kGva, 4096, MSM_BO_WC, 0); // blob_id 0: B2
    auto c = cc::nop();
    CHECK(g.send({&a, &bad, &c}) != 0);
    CHECK(g.host_seqno() == a.hdr().seqno);
}

TEST_CASE("Before the shared page exists requests still run but responses fail (H8)") {
    Guest g(manual_config(), false);
    auto d = cc::set_debuginfo("app", "app --x");
    CHECK(g.send({&d}) == 0);
    auto p = cc::get_param(MSM_PARAM_GPU_ID);
    CHECK(g.send({&p}) == -ENOMEM);
}

TEST_CASE("A malformed batch is refused with a logged reason and the context carries on (H2-H4)") {
    Guest g;
    std::vector<uint8_t> junk(24, 0);
    uint32_t hdr[4] = {99, 24, 1, 0};
    std::memcpy(junk.data(), hdr, sizeof hdr);
    CHECK(g.host.submit_cmd(g.ctx, junk) == -EINVAL);
    CHECK(g.has_log("UnknownCmd"));
    std::vector<uint8_t> odd(18, 0);
    CHECK(g.host.submit_cmd(g.ctx, odd) == -EINVAL);
    CHECK(g.host.submit_cmd(77, junk) == -EINVAL);
    CHECK(g.send(cc::nop()) == 0);
    CHECK(g.host_seqno() == g.seqno);
}

TEST_CASE("A response slot past the shared page aborts the stream (R2)") {
    Guest g;
    auto e = cc::get_param(MSM_PARAM_GPU_ID);
    reinterpret_cast<vdrm_ccmd_req*>(e.bytes.data())->rsp_off = kShmemSize - 16 - 8;
    CHECK(g.host.submit_cmd(g.ctx, e.bytes) == -ENOMEM);
}

TEST_CASE("GEM_NEW with blob_id 0 or a pending blob_id counts an async error and aborts (B2, E1)") {
    Guest g;
    CHECK(g.send(cc::gem_new(kGva, 4096, MSM_BO_WC, 0)) == -EINVAL);
    CHECK(g.async_error() == 1);
    REQUIRE(g.send(cc::gem_new(kGva, 4096, MSM_BO_WC, 7)) == 0);
    CHECK(g.send(cc::gem_new(kGva + 0x10000, 4096, MSM_BO_WC, 7)) == -EINVAL);
    CHECK(g.async_error() == 2);
}

TEST_CASE("GEM_NEW whose kernel GEM_NEW or SET_IOVA fails counts an async error, aborts, leaves no object (E1)") {
    Guest g;
    REQUIRE(g.new_bo(kGva) != 0);
    size_t live = g.host.live_objects();
    auto overlap = cc::gem_new(kGva, 4096, MSM_BO_WC, 50);
    auto after = cc::nop();
    CHECK(g.send({&overlap, &after}) == -ENOSPC);
    CHECK(g.async_error() == 1);
    CHECK(g.host_seqno() == overlap.hdr().seqno - 1);
    CHECK(g.host.live_objects() == live);
    CHECK(g.send(cc::gem_new(kGva + 0x10000, 4096, 0, 51)) == -EINVAL); // no cache mode
    CHECK(g.async_error() == 2);
    g.host.inject_kernel_failure(KernelOp::GemNew, 1, -ENOMEM);
    CHECK(g.send(cc::gem_new(kGva + 0x10000, 4096, MSM_BO_WC, 52)) == -ENOMEM);
    CHECK(g.async_error() == 3);
}

TEST_CASE("A blob create consumes the parked GEM_NEW; none parked is -ENOENT; the blob_id is then reusable (B8)") {
    Guest g;
    CHECK(g.host.resource_create_blob(g.ctx, 300, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096,
                                      9) == -ENOENT);
    CHECK(g.has_log("no GEM_NEW parked"));
    REQUIRE(g.send(cc::gem_new(kGva, 4096, MSM_BO_WC, 9)) == 0);
    CHECK(g.host.context_stats(g.ctx).parked_blobs == 1);
    REQUIRE(g.host.resource_create_blob(g.ctx, 300, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096,
                                        9) == 0);
    CHECK(g.host.context_stats(g.ctx).parked_blobs == 0);
    REQUIRE(g.send(cc::gem_new(kGva + 0x1000, 4096, MSM_BO_WC, 9)) == 0); // reusable
    CHECK(g.host.resource_create_blob(g.ctx, 300, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096,
                                      9) == -EINVAL); // res_id in use
    CHECK(g.host.resource_create_blob(g.ctx, 301, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096,
                                      9ull | (1ull << 32)) == -EINVAL); // B6
    CHECK(g.async_error() == 0);
}

TEST_CASE("A blob size other than the page-aligned GEM size is -EINVAL (B10)") {
    Guest g;
    REQUIRE(g.send(cc::gem_new(kGva, 5000, MSM_BO_WC, 3)) == 0);
    CHECK(g.host.resource_create_blob(g.ctx, 200, VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 5000,
                                      3) == -EINVAL);
    CHECK(g.host.context_stats(g.ctx).parked_blobs == 0); // consumed anyway, like VR13
}

TEST_CASE("GEM_SET_IOVA with an unknown res_id or a kernel failure counts an async error and the batch goes on (E2)") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t b = g.new_bo(kGva + 0x10000);
    auto unknown = cc::gem_set_iova(999, kGva + 0x20000);
    auto overlap = cc::gem_set_iova(b, kGva);    // b already at another iova: -EBUSY
    auto taken = cc::gem_set_iova(b, 0);         // clear b
    auto clash = cc::gem_set_iova(b, kGva);      // a's range: -ENOSPC
    auto after = cc::nop();
    CHECK(g.send({&unknown, &overlap, &taken, &clash, &after}) == 0);
    CHECK(g.async_error() == 3);
    CHECK(g.host_seqno() == after.hdr().seqno);
    CHECK(g.has_log("unknown res_id 999"));
    (void)a;
}

TEST_CASE("GEM_SUBMIT that the kernel refuses counts an async error and the batch goes on (E3)") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    auto bad_res = g.submit_req(q, 1, {{999, kGva}});
    auto bad_queue = g.submit_req(q + 5, 1, {{a, kGva}});
    auto after = cc::nop();
    CHECK(g.send({&bad_res, &bad_queue, &after}) == 0);
    CHECK(g.async_error() == 2);
    CHECK(g.host_seqno() == after.hdr().seqno);
}

TEST_CASE("A reused unretired fence seqno is an async error; after retire it is accepted (F7)") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    REQUIRE(g.submit(q, 4, {{a, kGva}}) == 0);
    REQUIRE(g.submit(q, 4, {{a, kGva}}) == 0);
    CHECK(g.async_error() == 1);
    g.host.retire_all();
    REQUIRE(g.submit(q, 4, {{a, kGva}}) == 0);
    CHECK(g.async_error() == 1);
}

TEST_CASE("UPLOAD failures abort the stream without an async error (E4)") {
    Guest g;
    uint32_t a = g.new_bo(kGva, 4096);
    std::vector<uint8_t> data(64, 0x5a);
    CHECK(g.send(cc::gem_upload(a, 4096 - 32, data)) == -EFAULT);
    CHECK(g.send(cc::gem_upload(999, 0, data)) == -ENOENT);
    CHECK(g.async_error() == 0);
    REQUIRE(g.send(cc::gem_upload(a, 128, data)) == 0);
    HostMapping m;
    REQUIRE(g.host.resource_map(g.ctx, a, &m) == 0);
    CHECK(static_cast<uint8_t*>(m.ptr)[128] == 0x5a);
    CHECK(static_cast<uint8_t*>(m.ptr)[127] == 0);
}

TEST_CASE("IOCTL_SIMPLE returns 0 or -1 only, and refuses ioctls outside the allow-list (5.5)") {
    Guest g;
    auto bad = cc::get_param(0x7f);
    REQUIRE(g.send(bad) == 0);
    auto e = cc::get_param(0x7f);
    REQUIRE(g.send({&e}) == 0);
    CHECK(g.rsp<msm_ccmd_ioctl_simple_rsp>(e).ret == -1);
    auto sq = cc::submitqueue_new(0, 7);
    REQUIRE(g.send({&sq}) == 0);
    CHECK(g.rsp<msm_ccmd_ioctl_simple_rsp>(sq).ret == -1);
    drm_msm_gem_new gn{4096, MSM_BO_WC, 0};
    auto forbidden = cc::ioctl_simple(DRM_IOCTL_MSM_GEM_NEW, {reinterpret_cast<uint8_t*>(&gn), sizeof gn});
    CHECK(g.send(forbidden) != 0);
    CHECK(g.host.live_objects() == 0);
}

TEST_CASE("CPU_PREP answers -EBUSY while a submit uses the bo and 0 after retire, never blocking") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    auto p = cc::gem_cpu_prep(a, MSM_PREP_WRITE);
    REQUIRE(g.send({&p}) == 0);
    CHECK(g.rsp<msm_ccmd_gem_cpu_prep_rsp>(p).ret == -EBUSY);
    g.host.retire_all();
    auto p2 = cc::gem_cpu_prep(a, MSM_PREP_WRITE);
    REQUIRE(g.send({&p2}) == 0);
    CHECK(g.rsp<msm_ccmd_gem_cpu_prep_rsp>(p2).ret == 0);
    auto p3 = cc::gem_cpu_prep(999, MSM_PREP_READ);
    REQUIRE(g.send({&p3}) == 0);
    CHECK(g.rsp<msm_ccmd_gem_cpu_prep_rsp>(p3).ret == -ENOENT);
}

TEST_CASE("WAIT_FENCE answers -ETIMEDOUT while pending, 0 once retired, -EINVAL for a future fence") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    REQUIRE(g.submit(q, 3, {{a, kGva}}) == 0);
    auto w = cc::wait_fence(q, 3);
    auto fut = cc::wait_fence(q, 4);
    REQUIRE(g.send({&w, &fut}) == 0);
    CHECK(g.rsp<msm_ccmd_wait_fence_rsp>(w).ret == -ETIMEDOUT);
    CHECK(g.rsp<msm_ccmd_wait_fence_rsp>(fut).ret == -EINVAL);
    g.host.retire_all();
    auto w2 = cc::wait_fence(q, 3);
    REQUIRE(g.send({&w2}) == 0);
    CHECK(g.rsp<msm_ccmd_wait_fence_rsp>(w2).ret == 0);
}

TEST_CASE("SUBMITQUEUE_QUERY returns the queue's faults and echoes the guest's len as out_len") {
    Guest g(manual_config(KernelEra::NoVmaTracking));
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0); // 6b: clear under the running submit -> fault
    auto e = cc::submitqueue_query(q, MSM_SUBMITQUEUE_PARAM_FAULTS, 8);
    REQUIRE(g.send({&e}) == 0);
    auto r = g.rsp<msm_ccmd_submitqueue_query_rsp>(e);
    CHECK(r.ret == 0);
    CHECK(r.out_len == 8);
    uint32_t faults = 0;
    std::memcpy(&faults, g.slot(e.hdr().rsp_off) + 12, 4);
    CHECK(faults == 1);
}

TEST_CASE("A fence on ring 0 or on a ring with nothing pending retires at once; ring > priorities is -EINVAL (F4)") {
    Guest g;
    CHECK(g.host.context_create_fence(g.ctx, 0, 1) == 0);
    CHECK(g.host.context_create_fence(g.ctx, 2, 2) == 0);
    CHECK(g.retired_count() == 2);
    CHECK(g.host.context_create_fence(g.ctx, 4, 3) == -EINVAL);
}

TEST_CASE("A fence on ring prio+1 after a submit retires when the GPU work completes (F3, F4)") {
    HostSimConfig cfg = manual_config();
    cfg.kernel.gpu_exec_us = 50;
    Guest g(cfg);
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue(1);
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 2, 10) == 0);
    CHECK(g.retired_count() == 0);
    CHECK(g.host.context_create_fence(g.ctx, 2, 11) == 0); // same ring: must wait for 10
    CHECK(g.retired_count() == 0);
    g.host.advance(49);
    CHECK(g.retired_count() == 0);
    g.host.advance(1);
    REQUIRE(g.retired_count() == 2);
    CHECK(g.retired[0] == std::make_tuple(g.ctx, 2u, uint64_t(10)));
    CHECK(g.retired[1] == std::make_tuple(g.ctx, 2u, uint64_t(11)));
}

TEST_CASE("shmem.global_faults is refreshed when a timeline fence retires (F6)") {
    Guest g(manual_config(KernelEra::NoVmaTracking));
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue(0);
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 1) == 0);
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0);
    CHECK(g.host.global_faults() == 1);
    CHECK(g.page()->global_faults == 0); // not until a timeline retires
    g.host.retire_all();
    CHECK(g.page()->global_faults == 1);
}

TEST_CASE("A submit on a queue the host never saw created runs but sets no timeline fence (F3)") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    REQUIRE(g.submit(0, 1, {{a, kGva}}) == 0); // default queue 0 exists in the kernel only
    CHECK(g.async_error() == 0);
    CHECK(g.has_log("unknown submitqueue 0"));
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 5) == 0);
    CHECK(g.retired_count() == 1); // nothing stored on the timeline: at once
}

TEST_CASE("Unref closes the GEM handle without clearing the iova: a pinned range stays until retire (B15)") {
    Guest g;
    uint32_t a = g.new_bo(kGva);
    uint32_t q = g.queue();
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    g.host.resource_unref(g.ctx, a);
    CHECK(g.host.mappings(g.ctx).size() == 1);
    CHECK(g.new_bo(kGva) == 0);
    CHECK(g.async_error() == 1);
    g.host.retire_all();
    CHECK(g.host.mappings(g.ctx).empty());
    CHECK(g.new_bo(kGva) != 0);
}

TEST_CASE("An exported object imported into another context has no iova there until SET_IOVA (B14)") {
    Guest g;
    uint32_t a = g.new_bo(kGva, 8192);
    std::vector<uint8_t> data(16, 0x77);
    REQUIRE(g.send(cc::gem_upload(a, 0, data)) == 0);
    int fd = -1;
    REQUIRE(g.host.resource_export_fd(g.ctx, a, &fd) == 0);
    REQUIRE(g.host.context_create(2, VIRTGPU_CAPSET_DRM, 4) == 0);
    uint64_t size = 0;
    REQUIRE(g.host.resource_import_fd(2, 500, fd, &size) == 0);
    CHECK(size == 8192);
    CHECK(g.host.mappings(2).empty());
    HostMapping m;
    REQUIRE(g.host.resource_map(2, 500, &m) == 0);
    CHECK(static_cast<uint8_t*>(m.ptr)[0] == 0x77);
    close(fd);
    CHECK(g.host.resource_import_fd(2, 501, 0, &size) != 0);
    CHECK(g.host.resource_import_fd(2, 500, fd, &size) != 0);
}

TEST_CASE("A blob created without MAPPABLE cannot be mapped or exported (B13)") {
    Guest g;
    uint32_t a = g.new_bo(kGva, 4096, MSM_BO_WC, 0);
    REQUIRE(a != 0);
    HostMapping m;
    CHECK(g.host.resource_map(g.ctx, a, &m) == -EINVAL);
    int fd = -1;
    CHECK(g.host.resource_export_fd(g.ctx, a, &fd) == -EINVAL);
}

TEST_CASE("Context destroy closes every object: bound, parked and the address space (B16)") {
    Guest g;
    g.new_bo(kGva);
    g.new_bo(kGva + 0x10000);
    REQUIRE(g.send(cc::gem_new(kGva + 0x20000, 4096, MSM_BO_WC, 40)) == 0); // parked only
    CHECK(g.host.live_objects() == 3);
    g.host.context_destroy(g.ctx);
    CHECK(g.host.live_objects() == 0);
    CHECK(g.host.submit_cmd(g.ctx, cc::nop().bytes) == -EINVAL);
}

TEST_CASE("A 4 GiB address space full of buffers allocates no backing memory until mapped") {
    Guest g;
    const uint64_t size = 64ull << 20;
    for (uint64_t i = 0; i < 64; i++)
        REQUIRE(g.new_bo(kGva + i * size, size) != 0);
    CHECK(g.host.kernel().memory_used() == 4ull << 30);
    CHECK(g.async_error() == 0);
    CHECK(g.host.kernel().backed_objects() == 0);
    HostMapping m;
    REQUIRE(g.host.resource_map(g.ctx, g.next_res - 1, &m) == 0);
    CHECK(g.host.kernel().backed_objects() == 1);
    // A 65th buffer does not fit anywhere in the range.
    CHECK(g.new_bo(kGva, 4096) == 0);
}

TEST_CASE("Host-side failures can be injected: nth GEM_NEW, SET_IOVA, and async_error on demand") {
    Guest g;
    g.host.inject_kernel_failure(KernelOp::SetIova, 2, -ENOSPC);
    CHECK(g.new_bo(kGva) != 0);
    CHECK(g.new_bo(kGva + 0x10000) == 0);
    CHECK(g.async_error() == 1);
    g.host.raise_async_error(g.ctx);
    CHECK(g.async_error() == 2);
}

TEST_CASE("The fdnc GET_IOVA extension returns the kernel's iova and is framed like any ccmd") {
    Guest g;
    uint32_t a = g.new_bo(kGva + 0x5000);
    auto e = cc::fdnc_gem_get_iova(a);
    auto n = cc::nop();
    REQUIRE(g.send({&e, &n}) == 0);
    auto r = g.rsp<fdnc_ccmd_gem_get_iova_rsp>(e);
    CHECK(r.ret == 0);
    CHECK(r.iova == kGva + 0x5000);
    CHECK(g.host_seqno() == n.hdr().seqno);
}
