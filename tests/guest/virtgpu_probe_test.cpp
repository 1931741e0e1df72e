// VirtgpuTransport's probe path against the real guest kernel (PROTOCOL.md §3): real GETPARAM,
// GET_CAPS and CONTEXT_INIT ioctls, and how each refusal is reported. Every case branches on what
// the device really offers, so the same suite passes on QEMU 7.2 (no capsets, EINVAL) and on a
// VMM with DRM native-context support, and fails if the transport and the kernel disagree.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "real_node.h"
#include "transports/virtgpu_transport.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace {

using fdnc::guest_test::RealNode;
namespace wire = fdnc::wire;

struct Offered {
    uint64_t caps_mask = 0;
    bool has_3d = false, blob = false, host_visible = false, cross_device = false, context_init = false;
    bool drm_capset() const { return (caps_mask >> wire::VIRTGPU_CAPSET_DRM) & 1; }
};

const std::string& node_path() {
    static const std::string p = fdnc::guest_test::find_virtio_gpu_node();
    return p;
}

Offered read_offered() {
    RealNode n(node_path());
    REQUIRE(n.fd() >= 0);
    Offered o;
    uint64_t v = 0;
    o.has_3d = n.getparam(wire::VIRTGPU_PARAM_3D_FEATURES, &v) == 0 && v;
    o.blob = n.getparam(wire::VIRTGPU_PARAM_RESOURCE_BLOB, &v) == 0 && v;
    o.host_visible = n.getparam(wire::VIRTGPU_PARAM_HOST_VISIBLE, &v) == 0 && v;
    o.cross_device = n.getparam(wire::VIRTGPU_PARAM_CROSS_DEVICE, &v) == 0 && v;
    o.context_init = n.getparam(wire::VIRTGPU_PARAM_CONTEXT_INIT, &v) == 0 && v;
    o.caps_mask = n.getparam(wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs, &v) == 0 ? v : 0;
    return o;
}

// The real kernel for everything except GETPARAM, which claims every capability: lets the
// transport open on a device that lacks them, so its GET_CAPS / CONTEXT_INIT reach the kernel.
class ClaimEverythingIoctl : public fdnc::DrmIoctl {
public:
    ClaimEverythingIoctl() : real_(fdnc::make_libdrm_ioctl()) {}
    std::vector<std::string> render_nodes() override { return real_->render_nodes(); }
    int open_node(const std::string& path) override { return real_->open_node(path); }
    std::string driver_name(int fd) override { return real_->driver_name(fd); }
    int ioctl(int fd, unsigned long request, void* arg) override {
        if (request != wire::DRM_IOCTL_VIRTGPU_GETPARAM) return real_->ioctl(fd, request, arg);
        auto* gp = static_cast<wire::drm_virtgpu_getparam*>(arg);
        const uint64_t v = gp->param == wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs ? 1ull << wire::VIRTGPU_CAPSET_DRM : 1;
        std::memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(gp->value)), &v, sizeof v);
        return 0;
    }
    void* mmap(size_t len, int prot, int flags, int fd, off_t off) override {
        return real_->mmap(len, prot, flags, fd, off);
    }
    void munmap(void* p, size_t len) override { real_->munmap(p, len); }
    void close(int fd) override { real_->close(fd); }

private:
    std::shared_ptr<fdnc::DrmIoctl> real_;
};

std::unique_ptr<fdnc::VirtgpuTransport> open_claiming_everything() {
    fdnc::VirtgpuOptions opts;
    opts.node = node_path();
    opts.sys = std::make_shared<ClaimEverythingIoctl>();
    std::string error;
    auto t = fdnc::VirtgpuTransport::open(opts, &error);
    INFO(error);
    REQUIRE(t);
    return t;
}

} // namespace

TEST_CASE("the render node under test is driven by virtio_gpu", "[guest]") {
    RealNode n(node_path());
    REQUIRE(n.fd() >= 0);
    CHECK(n.driver() == "virtio_gpu");
    CHECK_FALSE(n.version().empty());
}

TEST_CASE("every GETPARAM the probe reads is answered by the kernel with a boolean or a capset mask", "[guest]") {
    RealNode n(node_path());
    REQUIRE(n.fd() >= 0);
    for (uint64_t p : {wire::VIRTGPU_PARAM_3D_FEATURES, wire::VIRTGPU_PARAM_CAPSET_QUERY_FIX,
                       wire::VIRTGPU_PARAM_RESOURCE_BLOB, wire::VIRTGPU_PARAM_HOST_VISIBLE,
                       wire::VIRTGPU_PARAM_CROSS_DEVICE, wire::VIRTGPU_PARAM_CONTEXT_INIT}) {
        uint64_t v = 7;
        INFO("param " << p);
        REQUIRE(n.getparam(p, &v) == 0); // a 5.16+ kernel knows all of them
        CHECK(v <= 1);
    }
    uint64_t mask = 0;
    REQUIRE(n.getparam(wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs, &mask) == 0);
    CHECK((mask & 1) == 0); // capset id 0 does not exist (§3.3)
    uint64_t v = 0;
    CHECK(n.getparam(0xdead, &v) == -EINVAL); // unknown params are refused, not answered with 0
}

TEST_CASE("the transport's probe flags equal the kernel's raw GETPARAM answers", "[guest]") {
    const Offered o = read_offered();
    fdnc::VirtgpuOptions opts;
    opts.node = node_path();
    fdnc::VirtgpuProbe p;
    std::string error;
    auto t = fdnc::VirtgpuTransport::open(opts, &error, &p);
    CHECK(p.node == node_path());
    CHECK(p.driver == "virtio_gpu");
    CHECK(p.is_virtio_gpu);
    CHECK(p.has_3d == o.has_3d);
    CHECK(p.has_blob == o.blob);
    CHECK(p.has_host_visible == o.host_visible);
    CHECK(p.has_cross_device == o.cross_device);
    CHECK(p.has_context_init == o.context_init);
    CHECK(p.capset_mask == o.caps_mask);
    CHECK(p.has_drm_capset == o.drm_capset());
}

TEST_CASE("the probe names the first missing capability and open fails with that reason", "[guest]") {
    const Offered o = read_offered();
    // The order the transport documents: CONTEXT_INIT, 3D, capset 6, blob, host-visible.
    std::string expect;
    if (!o.context_init) expect = "CONTEXT_INIT";
    else if (!o.has_3d) expect = "3D_FEATURES";
    else if (!o.drm_capset()) expect = "capset 6";
    else if (!o.blob) expect = "RESOURCE_BLOB";
    else if (!o.host_visible) expect = "HOST_VISIBLE";
    fdnc::VirtgpuOptions opts;
    opts.node = node_path();
    fdnc::VirtgpuProbe p;
    std::string error;
    auto t = fdnc::VirtgpuTransport::open(opts, &error, &p);
    INFO("probe error: " << p.error);
    if (expect.empty()) {
        CHECK(p.usable);
        CHECK(t != nullptr);
        CHECK(p.error.empty());
    } else {
        CHECK_FALSE(p.usable);
        CHECK(t == nullptr);
        CHECK(p.error.find(expect) != std::string::npos);
        CHECK(error == p.error);
    }
}

TEST_CASE("raw GET_CAPS for the DRM capset fails exactly when the host does not offer it", "[guest]") {
    const Offered o = read_offered();
    RealNode n(node_path());
    uint8_t buf[64] = {};
    const int r = n.get_caps(wire::VIRTGPU_CAPSET_DRM, 0, buf, sizeof buf);
    INFO("GET_CAPS(6, 0) = " << fdnc::guest_test::errno_name(r) << ", capset mask " << o.caps_mask);
    if (o.drm_capset()) CHECK(r == 0);
    else if (o.caps_mask == 0) CHECK(r == -ENOSYS); // the driver has no capsets at all
    else CHECK(r == -EINVAL);                       // capsets, but not this one
}

TEST_CASE("raw CONTEXT_INIT for the DRM capset is refused with EINVAL when the host lacks it", "[guest]") {
    const Offered o = read_offered();
    RealNode n(node_path());
    const int r = n.context_init(wire::VIRTGPU_CAPSET_DRM, 1);
    INFO("CONTEXT_INIT(6, 1 ring) = " << fdnc::guest_test::errno_name(r));
    CHECK(r == (o.drm_capset() && o.context_init ? 0 : -EINVAL));
}

TEST_CASE("the transport maps the kernel's GET_CAPS refusal to ENOENT with the reason", "[guest]") {
    const Offered o = read_offered();
    auto t = open_claiming_everything();
    std::vector<uint8_t> out(64, 0xAB);
    const int r = t->get_capset(wire::VIRTGPU_CAPSET_DRM, 0, out);
    INFO("get_capset = " << r << ", last_error: " << t->last_error());
    if (o.drm_capset()) {
        CHECK(r == static_cast<int>(out.size()));
    } else {
        CHECK(r == -ENOENT);
        CHECK(t->last_error().find("host lacks the capset") != std::string::npos);
    }
}

TEST_CASE("the transport maps the kernel's CONTEXT_INIT refusal to EINVAL with the reason", "[guest]") {
    const Offered o = read_offered();
    auto t = open_claiming_everything();
    const int r = t->context_init(wire::VIRTGPU_CAPSET_DRM, 1);
    INFO("context_init = " << r << ", last_error: " << t->last_error());
    if (o.drm_capset() && o.context_init) {
        CHECK(r == 0);
    } else {
        CHECK(r == -EINVAL);
        CHECK(t->last_error().find("CONTEXT_INIT") != std::string::npos);
        CHECK(t->last_error().find("refused") != std::string::npos);
    }
}

TEST_CASE("opening a render node that does not exist reports its errno text", "[guest]") {
    fdnc::VirtgpuOptions opts;
    opts.node = "/dev/dri/renderD255";
    fdnc::VirtgpuProbe p;
    std::string error;
    auto t = fdnc::VirtgpuTransport::open(opts, &error, &p);
    CHECK(t == nullptr);
    CHECK_FALSE(p.usable);
    CHECK(error.find(std::strerror(ENOENT)) != std::string::npos);
}
