// VirtgpuTransport over FakeVirtgpu (the guest kernel's ioctls served by host_sim's MsmRenderer).
#include <sys/eventfd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "fake_virtgpu.h"
#include "holding_host.h"
#include "host_sim/msm_renderer.h"
#include "transport_helpers.h"
#include "transports/virtgpu_transport.h"

using namespace fdnc;
using fdnc::test::FakeVirtgpu;
using fdnc::test::FakeVirtgpuConfig;

namespace {

struct Rig {
    std::unique_ptr<host::MsmRenderer> host;
    std::shared_ptr<FakeVirtgpu> fake;
    std::unique_ptr<VirtgpuTransport> t;
    std::string error;
    VirtgpuProbe probe;

    explicit Rig(FakeVirtgpuConfig cfg = {}, host::HostSimConfig hc = {}) {
        host = std::make_unique<host::MsmRenderer>(hc);
        fake = std::make_shared<FakeVirtgpu>(*host, cfg);
        VirtgpuOptions o;
        o.sys = fake;
        t = VirtgpuTransport::open(o, &error, &probe);
    }
    ~Rig() {
        t.reset();
        fake.reset();
    }
};

struct OpenCtx : Rig {
    uint32_t shmem = 0;
    void* shmem_ptr = nullptr;
    explicit OpenCtx(host::HostSimConfig hc = {}) : Rig({}, hc) {
        REQUIRE(t);
        REQUIRE(t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
        REQUIRE(t->create_blob(test::shmem_args(), &shmem) == 0);
        REQUIRE(t->map_blob(shmem, test::kShmemSize, &shmem_ptr) == 0);
    }
};

} // namespace

TEST_CASE("virtgpu open picks the virtio_gpu node among other render nodes", "[virtgpu]") {
    FakeVirtgpuConfig cfg;
    cfg.other_nodes = {{"/dev/dri/renderD128", "i915"}};
    cfg.node = "/dev/dri/renderD129";
    Rig r(cfg);
    INFO(r.error);
    REQUIRE(r.t);
    CHECK(r.probe.node == "/dev/dri/renderD129");
    CHECK(r.probe.usable);
    CHECK(r.t->info().name == "virtgpu");
    CHECK_FALSE(r.t->info().host_assigns_res_id);
}

TEST_CASE("virtgpu open without a virtio_gpu node says so and lists what it found", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.other_nodes = {{"/dev/dri/renderD128", "i915"}};
    cfg.node.clear();
    Rig r(cfg);
    CHECK_FALSE(r.t);
    CHECK_THAT(r.error, Catch::Contains("no virtio_gpu render node") && Catch::Contains("i915"));
}

TEST_CASE("virtgpu open of an unopenable node includes the errno text", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.open_error = -EACCES;
    host::MsmRenderer host;
    auto fake = std::make_shared<FakeVirtgpu>(host, cfg);
    std::string err;
    auto t = VirtgpuTransport::open({"/dev/dri/renderD128", fake}, &err);
    CHECK_FALSE(t);
    CHECK_THAT(err, Catch::Contains("renderD128") && Catch::Contains(std::strerror(EACCES)));
}

TEST_CASE("virtgpu probe reports a kernel without CONTEXT_INIT", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.has_context_init = false;
    Rig r(cfg);
    CHECK_FALSE(r.t);
    CHECK_THAT(r.error, Catch::Contains("kernel lacks CONTEXT_INIT") && Catch::Contains(std::strerror(EINVAL)));
    CHECK_FALSE(r.probe.has_context_init);
}

TEST_CASE("virtgpu probe reports a host without the DRM capset", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.capset_mask = (1u << 1) | (1u << 2) | (1u << 4);
    Rig r(cfg);
    CHECK_FALSE(r.t);
    CHECK_THAT(r.error, Catch::Contains("host offers no DRM native-context capset") && Catch::Contains("0x16"));
    CHECK(r.probe.capset_mask == 0x16);
}

TEST_CASE("virtgpu probe reports missing blob resources", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.has_blob = false;
    Rig r(cfg);
    CHECK_FALSE(r.t);
    CHECK_THAT(r.error, Catch::Contains("no blob resources"));
}

TEST_CASE("virtgpu probe reports missing host-visible memory", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.has_host_visible = false;
    Rig r(cfg);
    CHECK_FALSE(r.t);
    CHECK_THAT(r.error, Catch::Contains("no host-visible memory"));
}

TEST_CASE("virtgpu context init refused by the VMM names missing native-context support", "[virtgpu][probe]") {
    FakeVirtgpuConfig cfg;
    cfg.context_init_error = -EINVAL;
    Rig r(cfg);
    REQUIRE(r.t);
    CHECK(r.t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == -EINVAL);
    CHECK_THAT(r.t->last_error(), Catch::Contains("does not support") && Catch::Contains(std::strerror(EINVAL)));
}

TEST_CASE("virtgpu get_capset returns the host's msm capset through GET_CAPS", "[virtgpu]") {
    Rig r;
    REQUIRE(r.t);
    int ret = 0;
    auto caps = test::read_caps(*r.t, &ret);
    CHECK(ret == static_cast<int>(sizeof caps));
    CHECK(caps.context_type == wire::VIRTGPU_DRM_CONTEXT_MSM);
    CHECK(caps.u.msm.gpu_id == 630);
    CHECK(caps.u.msm.va_size != 0);
    uint8_t buf[16];
    CHECK(r.t->get_capset(wire::VIRTGPU_CAPSET_VENUS, 0, buf) == -ENOENT);
}

TEST_CASE("virtgpu blob res_ids come back from the ioctl without a wait", "[virtgpu]") {
    OpenCtx c;
    uint32_t res = 0;
    bool waited = true;
    REQUIRE(c.t->resource_id(c.shmem, &res, &waited) == 0);
    CHECK_FALSE(waited);
    CHECK(res == 1); // the kernel's resource ids start at 1
    const auto* s = static_cast<const wire::msm_shmem*>(c.shmem_ptr);
    CHECK(s->base.rsp_mem_offset == 16);
}

TEST_CASE("virtgpu execbuf runs ccmds and its sync_file signals after them", "[virtgpu]") {
    OpenCtx c;
    const auto nop = test::nop_with_seqno(21);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 0, true, -1}, &f) == 0);
    CHECK(f.point == 1);
    CHECK(c.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(test::shmem_seqno(c.shmem_ptr) == 21);
    CHECK(c.fake->ioctls(wire::DRM_IOCTL_VIRTGPU_EXECBUFFER) == 1);
    CHECK(c.t->execbuf({nop, 4, true, -1}, &f) == -EINVAL); // ring beyond NUM_RINGS
}

TEST_CASE("virtgpu fence wait times out until the host retires the fence", "[virtgpu]") {
    host::MsmRenderer inner;
    test::HoldingHost held(inner);
    auto fake = std::make_shared<FakeVirtgpu>(held);
    std::string err;
    auto t = VirtgpuTransport::open({"", fake}, &err);
    REQUIRE(t);
    REQUIRE(t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    held.hold(true);
    const auto nop = test::nop_with_seqno(1);
    TransportFence f;
    REQUIRE(t->execbuf({nop, 1, true, -1}, &f) == 0);
    CHECK(t->wait_fence(f, 10'000'000) == -ETIMEDOUT);
    CHECK(t->wait_fence(f, 0) == -ETIMEDOUT);
    held.hold(false); // releases the held retirements
    CHECK(t->wait_fence(f, 5'000'000'000) == 0);
    t.reset();
}

TEST_CASE("virtgpu tunnelled GEM_NEW gives a mappable buffer that exports and imports deduplicated", "[virtgpu]") {
    OpenCtx c;
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 8192, wire::MSM_BO_WC, 1);
    BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D,
                     wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE | wire::VIRTGPU_BLOB_FLAG_USE_SHAREABLE, 8192, 1, gem.bytes};
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(b, &h) == 0);
    void* p = nullptr;
    REQUIRE(c.t->map_blob(h, 8192, &p) == 0);
    std::memset(p, 0x33, 8192);
    int fd = -1;
    REQUIRE(c.t->export_blob_fd(h, &fd) == 0);
    uint8_t byte = 0;
    CHECK(::pread(fd, &byte, 1, 100) == 1);
    CHECK(byte == 0x33);
    uint32_t h2 = 0;
    uint64_t size = 0;
    REQUIRE(c.t->import_blob_fd(fd, &h2, &size) == 0);
    CHECK(h2 == h);
    CHECK(size == 8192);
    ::close(fd);
    CHECK(c.host->async_error(c.fake->ctx_id()) == 0);
    CHECK(c.t->close_blob(h) == 0);
    CHECK(c.fake->live_handles() == 1); // the shared page only
}

TEST_CASE("virtgpu calls after close fail with -EPIPE", "[virtgpu]") {
    OpenCtx c;
    const auto nop = test::nop_with_seqno(5);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 0, true, -1}, &f) == 0);
    c.t->close();
    CHECK(c.t->execbuf({nop, 0, false, -1}, nullptr) == -EPIPE);
    uint32_t h;
    CHECK(c.t->create_blob(test::shmem_args(), &h) == -EPIPE);
    CHECK(c.t->wait_fence(f, -1) != -ETIMEDOUT); // returns, never hangs
}
