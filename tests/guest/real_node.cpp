#include "real_node.h"

#include <fcntl.h>
#include <unistd.h>
#include <xf86drm.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "transports/virtgpu_transport.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::guest_test {

namespace {
uint64_t ptr_u64(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }
} // namespace

std::string find_virtio_gpu_node() {
    if (const char* env = std::getenv("FDNC_GUEST_NODE"); env && *env) return env;
    std::set<std::string> nodes; // sorted: renderD128 first
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/dev/dri", ec))
        if (e.path().filename().string().rfind("renderD", 0) == 0) nodes.insert(e.path().string());
    for (const std::string& n : nodes) {
        RealNode node(n);
        if (node.fd() >= 0 && node.driver() == "virtio_gpu") return n;
    }
    return "";
}

RealNode::RealNode(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) open_error_ = -errno;
}

RealNode::~RealNode() {
    if (fd_ >= 0) ::close(fd_);
}

std::string RealNode::driver() const {
    drmVersionPtr v = fd_ >= 0 ? drmGetVersion(fd_) : nullptr;
    if (!v) return "";
    std::string name(v->name, v->name_len);
    drmFreeVersion(v);
    return name;
}

std::string RealNode::version() const {
    drmVersionPtr v = fd_ >= 0 ? drmGetVersion(fd_) : nullptr;
    if (!v) return "";
    std::string s = std::to_string(v->version_major) + "." + std::to_string(v->version_minor) + "." +
                    std::to_string(v->version_patchlevel) + " (" + std::string(v->date, v->date_len) + ")";
    drmFreeVersion(v);
    return s;
}

int RealNode::getparam(uint64_t param, uint64_t* value) const {
    uint64_t v = 0; // the kernel writes an int through the pointer (§3.2): keep the upper half zero
    wire::drm_virtgpu_getparam gp{param, ptr_u64(&v)};
    const int r = drmIoctl(fd_, wire::DRM_IOCTL_VIRTGPU_GETPARAM, &gp) == 0 ? 0 : -errno;
    *value = r == 0 ? v : 0;
    return r;
}

int RealNode::get_caps(uint32_t capset_id, uint32_t version, void* buf, uint32_t size) const {
    wire::drm_virtgpu_get_caps gc{capset_id, version, ptr_u64(buf), size, 0};
    return drmIoctl(fd_, wire::DRM_IOCTL_VIRTGPU_GET_CAPS, &gc) == 0 ? 0 : -errno;
}

int RealNode::context_init(uint32_t capset_id, uint32_t num_rings) const {
    // The same two params VirtgpuTransport sends (G4).
    wire::drm_virtgpu_context_set_param params[2] = {{wire::VIRTGPU_CONTEXT_PARAM_CAPSET_ID, capset_id},
                                                     {wire::VIRTGPU_CONTEXT_PARAM_NUM_RINGS, num_rings}};
    wire::drm_virtgpu_context_init ci{2, 0, ptr_u64(params)};
    return drmIoctl(fd_, wire::DRM_IOCTL_VIRTGPU_CONTEXT_INIT, &ci) == 0 ? 0 : -errno;
}

std::string errno_name(int err) {
    if (err == 0) return "0";
    const char* n = strerrorname_np(err < 0 ? -err : err);
    return n ? n : "errno " + std::to_string(err < 0 ? -err : err);
}

std::string describe_node(const std::string& path) {
    RealNode node(path);
    if (node.fd() < 0) return path + ": open failed: " + errno_name(node.open_error());
    std::string s = path + ": driver " + node.driver() + " " + node.version() + "; GETPARAM";
    static const std::pair<uint64_t, const char*> params[] = {
        {wire::VIRTGPU_PARAM_3D_FEATURES, "3D_FEATURES"},       {wire::VIRTGPU_PARAM_CAPSET_QUERY_FIX, "CAPSET_QUERY_FIX"},
        {wire::VIRTGPU_PARAM_RESOURCE_BLOB, "RESOURCE_BLOB"},   {wire::VIRTGPU_PARAM_HOST_VISIBLE, "HOST_VISIBLE"},
        {wire::VIRTGPU_PARAM_CROSS_DEVICE, "CROSS_DEVICE"},     {wire::VIRTGPU_PARAM_CONTEXT_INIT, "CONTEXT_INIT"},
        {wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs, "SUPPORTED_CAPSET_IDs"}};
    for (const auto& [id, name] : params) {
        uint64_t v = 0;
        const int r = node.getparam(id, &v);
        char buf[64];
        if (r == 0) std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
        s += std::string(" ") + name + "=" + (r == 0 ? std::string(buf) : errno_name(r));
    }
    uint8_t caps[64] = {};
    s += "; GET_CAPS(6,0)=" + errno_name(node.get_caps(wire::VIRTGPU_CAPSET_DRM, 0, caps, sizeof caps));
    {
        RealNode fresh(path); // CONTEXT_INIT succeeds at most once per file
        s += "; CONTEXT_INIT(capset 6, 1 ring)=" + errno_name(fresh.context_init(wire::VIRTGPU_CAPSET_DRM, 1));
    }
    VirtgpuProbe probe;
    std::string error;
    VirtgpuOptions opts;
    opts.node = path;
    auto t = VirtgpuTransport::open(opts, &error, &probe);
    s += std::string("; probe usable=") + (probe.usable ? "yes" : "no") +
         (probe.error.empty() ? std::string() : " error=\"" + probe.error + "\"");
    return s;
}

} // namespace fdnc::guest_test
