// Device::open refuses a capset it cannot use, each with its own named reason (PROTOCOL.md §4.5).
#include <cerrno>
#include <cstring>
#include <functional>

#include "fd_bo_fixture.h"
#include "host_sim/msm_renderer.h"
#include "virtio_proto/drm_capset.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {

// Forwards to a real in-process transport but lets the test rewrite the capset the host sends.
class CapsetRewriter : public Transport {
public:
    CapsetRewriter(std::unique_ptr<Transport> inner, std::function<void(wire::virgl_renderer_capset_drm&)> edit,
                   int capset_error = 0)
        : inner_(std::move(inner)), edit_(std::move(edit)), capset_error_(capset_error) {}
    TransportInfo info() const override { return inner_->info(); }
    int get_capset(uint32_t id, uint32_t version, std::span<uint8_t> out) override {
        if (capset_error_) return capset_error_;
        int ret = inner_->get_capset(id, version, out);
        if (ret < 0 || out.size() < sizeof(wire::virgl_renderer_capset_drm)) return ret;
        wire::virgl_renderer_capset_drm caps;
        std::memcpy(&caps, out.data(), sizeof(caps));
        edit_(caps);
        std::memcpy(out.data(), &caps, sizeof(caps));
        return ret;
    }
    int context_init(uint32_t c, uint32_t n) override { return inner_->context_init(c, n); }
    int create_blob(const BlobCreateArgs& a, uint32_t* h) override { return inner_->create_blob(a, h); }
    int resource_id(uint32_t h, uint32_t* r, bool* w) override { return inner_->resource_id(h, r, w); }
    int execbuf(const ExecbufArgs& a, TransportFence* f) override { return inner_->execbuf(a, f); }
    int wait_fence(TransportFence f, int64_t t) override { return inner_->wait_fence(f, t); }
    int map_blob(uint32_t h, uint64_t s, void** p) override { return inner_->map_blob(h, s, p); }
    void unmap_blob(uint32_t h, void* p, uint64_t s) override { inner_->unmap_blob(h, p, s); }
    int close_blob(uint32_t h) override { return inner_->close_blob(h); }
    int export_blob_fd(uint32_t h, int* fd) override { return inner_->export_blob_fd(h, fd); }
    int import_blob_fd(int fd, uint32_t* h, uint64_t* s) override { return inner_->import_blob_fd(fd, h, s); }

private:
    std::unique_ptr<Transport> inner_;
    std::function<void(wire::virgl_renderer_capset_drm&)> edit_;
    int capset_error_;
};

std::string open_error(std::function<void(wire::virgl_renderer_capset_drm&)> edit, int capset_error = 0) {
    auto t = std::make_unique<CapsetRewriter>(open_inproc_transport(InprocConfig{}), std::move(edit), capset_error);
    std::string err;
    auto dev = Device::open(std::move(t), DeviceOptions{}, &err);
    CHECK_FALSE(dev);
    return err;
}

} // namespace

TEST_CASE("the unmodified host capset opens a device", "[fd_bo][capset]") {
    auto t = std::make_unique<CapsetRewriter>(open_inproc_transport(InprocConfig{}),
                                              [](wire::virgl_renderer_capset_drm&) {});
    std::string err;
    CHECK(Device::open(std::move(t), DeviceOptions{}, &err));
}

TEST_CASE("a host without the DRM capset is refused by name", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto&) {}, -ENOENT), Catch::Contains("no DRM native-context capset"));
}

TEST_CASE("a capset for another driver is refused as wrong context_type", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto& c) { c.context_type = wire::VIRTGPU_DRM_CONTEXT_AMDGPU; }),
               Catch::Contains("wrong context_type"));
}

TEST_CASE("an unknown wire format version is refused", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto& c) { c.wire_format_version = 3; }),
               Catch::Contains("unsupported protocol version"));
}

TEST_CASE("a host msm older than uabi 1.9 or of another major is refused", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto& c) { c.version_minor = 8; }), Catch::Contains("unsupported msm version"));
    CHECK_THAT(open_error([](auto& c) { c.version_major = 2; }), Catch::Contains("unsupported msm version"));
}

TEST_CASE("a host without a userspace address space (va_size 0) is refused", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto& c) { c.u.msm.va_size = 0; }), Catch::Contains("no address space"));
}

TEST_CASE("a capset without any GPU id is refused", "[fd_bo][capset]") {
    CHECK_THAT(open_error([](auto& c) {
                   c.u.msm.gpu_id = 0;
                   c.u.msm.chip_id = 0;
               }),
               Catch::Contains("neither gpu_id nor chip_id"));
}

TEST_CASE("host mode needs the host to announce fdnc's extension; guest mode does not", "[fd_bo][capset]") {
    // virglrenderer leaves the capset's pad word 0: such a host would drop the context (vtest) or
    // never answer (virtio-gpu) on FDNC_CCMD_GEM_GET_IOVA, so host mode is refused up front.
    auto real_like = [](wire::virgl_renderer_capset_drm& c) { c.pad = 0; };
    DeviceOptions host_mode;
    host_mode.iova_mode = IovaMode::Host;
    std::string err;
    auto t = std::make_unique<CapsetRewriter>(open_inproc_transport(InprocConfig{}), real_like);
    CHECK_FALSE(Device::open(std::move(t), host_mode, &err));
    CHECK_THAT(err, Catch::Contains("FDNC_CCMD_GEM_GET_IOVA"));
    t = std::make_unique<CapsetRewriter>(open_inproc_transport(InprocConfig{}), real_like);
    auto guest = Device::open(std::move(t), DeviceOptions{}, &err);
    REQUIRE(guest);
    CHECK_FALSE(guest->host_has_fdnc_extensions());
    // fdnc's own host announces it, and host mode opens.
    t = std::make_unique<CapsetRewriter>(open_inproc_transport(InprocConfig{}), [](auto&) {});
    auto own = Device::open(std::move(t), host_mode, &err);
    INFO(err);
    REQUIRE(own);
    CHECK(own->host_has_fdnc_extensions());
}
