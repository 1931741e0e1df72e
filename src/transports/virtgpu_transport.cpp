#include "transports/virtgpu_transport.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xf86drm.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "virtio_proto/drm_capset.h"
#include "transports/fence_fd_timeline.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

namespace {

std::string errtext(int neg) { return std::strerror(neg < 0 ? -neg : neg); }

uint64_t ptr_u64(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

constexpr const char* kVirtioGpuDriver = "virtio_gpu"; // G1

class LibdrmIoctl final : public DrmIoctl {
public:
    std::vector<std::string> render_nodes() override {
        std::vector<std::string> out;
        drmDevicePtr devs[64];
        const int n = drmGetDevices2(0, devs, 64);
        if (n > 0) {
            for (int i = 0; i < n; ++i)
                if (devs[i]->available_nodes & (1 << DRM_NODE_RENDER)) out.emplace_back(devs[i]->nodes[DRM_NODE_RENDER]);
            drmFreeDevices(devs, n);
        }
        if (out.empty()) { // no sysfs (some containers): try the fixed names
            for (int minor = 128; minor < 192; ++minor) {
                char path[64];
                std::snprintf(path, sizeof path, "/dev/dri/renderD%d", minor);
                if (::access(path, F_OK) == 0) out.emplace_back(path);
            }
        }
        return out;
    }
    int open_node(const std::string& path) override {
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    std::string driver_name(int fd) override {
        drmVersionPtr v = drmGetVersion(fd);
        if (!v) return {};
        std::string name = v->name ? std::string(v->name, v->name_len) : std::string();
        drmFreeVersion(v);
        return name;
    }
    int ioctl(int fd, unsigned long request, void* arg) override {
        return drmIoctl(fd, request, arg) == 0 ? 0 : -errno; // drmIoctl restarts EINTR/EAGAIN
    }
    void* mmap(size_t len, int prot, int flags, int fd, off_t offset) override {
        return ::mmap(nullptr, len, prot, flags, fd, offset);
    }
    void munmap(void* ptr, size_t len) override { ::munmap(ptr, len); }
    void close(int fd) override { ::close(fd); }
    int prime_handle_to_fd(int fd, uint32_t handle, int* out_fd) override {
        return drmPrimeHandleToFD(fd, handle, DRM_CLOEXEC | DRM_RDWR, out_fd) == 0 ? 0 : -errno;
    }
    int prime_fd_to_handle(int fd, int prime_fd, uint32_t* handle) override {
        return drmPrimeFDToHandle(fd, prime_fd, handle) == 0 ? 0 : -errno;
    }
};

} // namespace

int DrmIoctl::prime_handle_to_fd(int fd, uint32_t handle, int* out_fd) {
    wire::drm_prime_handle_arg a{handle, wire::kDrmCloexec | 02 /* O_RDWR: writable CPU maps */, -1};
    if (int r = ioctl(fd, wire::kDrmIoctlPrimeHandleToFd, &a); r < 0) return r;
    *out_fd = a.fd;
    return 0;
}

int DrmIoctl::prime_fd_to_handle(int fd, int prime_fd, uint32_t* handle) {
    wire::drm_prime_handle_arg a{0, 0, prime_fd};
    if (int r = ioctl(fd, wire::kDrmIoctlPrimeFdToHandle, &a); r < 0) return r;
    *handle = a.handle;
    return 0;
}

std::shared_ptr<DrmIoctl> make_libdrm_ioctl() { return std::make_shared<LibdrmIoctl>(); }

struct VirtgpuTransport::Impl {
    struct Blob {
        uint32_t res_id = 0;
        uint64_t size = 0;
        void* map = nullptr;
        uint64_t map_size = 0;
    };
    std::shared_ptr<DrmIoctl> sys;
    int fd = -1;
    VirtgpuProbe probe;
    mutable std::mutex mu;
    std::string last_error;
    std::atomic<bool> closed{false};
    bool ctx_inited = false;
    uint32_t num_rings = 0;
    std::map<uint32_t, Blob> blobs; // GEM handle -> blob
    FenceFdTimelines timelines;
    std::mutex submit_mu; // execbuf + point numbering in one order

    int fail(int r, const std::string& what) {
        std::lock_guard g(mu);
        last_error = what + ": " + errtext(r);
        return r;
    }

    // GETPARAM with a zeroed u64 destination: mainline writes an int, a posted patch 8 bytes (§3.2, §11.9).
    int getparam(uint64_t param, uint64_t* value) {
        uint64_t v = 0;
        wire::drm_virtgpu_getparam gp{param, ptr_u64(&v)};
        const int r = sys->ioctl(fd, wire::DRM_IOCTL_VIRTGPU_GETPARAM, &gp);
        *value = r == 0 ? v : 0;
        return r;
    }

    void run_probe();
};

void VirtgpuTransport::Impl::run_probe() {
    VirtgpuProbe& p = probe;
    uint64_t v = 0;
    const int r3d = getparam(wire::VIRTGPU_PARAM_3D_FEATURES, &v);
    p.has_3d = r3d == 0 && v != 0;
    p.has_blob = getparam(wire::VIRTGPU_PARAM_RESOURCE_BLOB, &v) == 0 && v != 0;
    p.has_host_visible = getparam(wire::VIRTGPU_PARAM_HOST_VISIBLE, &v) == 0 && v != 0;
    p.has_cross_device = getparam(wire::VIRTGPU_PARAM_CROSS_DEVICE, &v) == 0 && v != 0;
    const int rci = getparam(wire::VIRTGPU_PARAM_CONTEXT_INIT, &v);
    p.has_context_init = rci == 0 && v != 0;
    const int rcaps = getparam(wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs, &v);
    p.capset_mask = rcaps == 0 ? v : 0;
    p.has_drm_capset = (p.capset_mask >> wire::VIRTGPU_CAPSET_DRM) & 1;

    char mask[32];
    std::snprintf(mask, sizeof mask, "0x%llx", static_cast<unsigned long long>(p.capset_mask));
    // Every missing capability is named, most fundamental first, so one line says all that is
    // wrong (e.g. QEMU 7.2's plain virtio-gpu: no DRM capset, no CONTEXT_INIT, no 3D, no blobs).
    std::vector<std::string> missing;
    if (!p.has_drm_capset)
        missing.push_back(std::string("host offers no DRM native-context capset (capset 6 not in "
                                      "SUPPORTED_CAPSET_IDs ") +
                          mask + (rcaps < 0 ? ": " + errtext(rcaps) : std::string()) + ")");
    if (!p.has_context_init) {
        // EINVAL: this kernel does not know the param (< 5.16); 0: the VMM did not offer it.
        missing.push_back(rci < 0 ? "kernel lacks CONTEXT_INIT (VIRTGPU_PARAM_CONTEXT_INIT: " + errtext(rci) +
                                        "); a 5.16+ guest kernel is needed"
                                  : std::string("CONTEXT_INIT unsupported by the host (VIRTGPU_PARAM_CONTEXT_INIT "
                                                "is 0: the VMM does not offer it)"));
    }
    if (!p.has_3d)
        missing.push_back("host has no 3D support (VIRTGPU_PARAM_3D_FEATURES: " +
                          (r3d < 0 ? errtext(r3d) : std::string("0")) + ")");
    if (!p.has_blob) missing.push_back("no blob resources (VIRTGPU_PARAM_RESOURCE_BLOB is 0)");
    if (!p.has_host_visible)
        missing.push_back("no host-visible memory (VIRTGPU_PARAM_HOST_VISIBLE is 0: HOST3D blobs cannot be mapped)");
    p.error.clear();
    for (const std::string& m : missing) p.error += (p.error.empty() ? "" : "; ") + m;
    p.usable = p.error.empty();
}

std::unique_ptr<VirtgpuTransport> VirtgpuTransport::open(const VirtgpuOptions& opts, std::string* error,
                                                         VirtgpuProbe* probe_out) {
    auto impl = std::make_unique<Impl>();
    impl->sys = opts.sys ? opts.sys : make_libdrm_ioctl();
    VirtgpuProbe& p = impl->probe;
    auto finish = [&](bool ok) -> std::unique_ptr<VirtgpuTransport> {
        if (probe_out) *probe_out = p;
        if (!ok) {
            if (error) *error = p.error;
            return nullptr;
        }
        return std::unique_ptr<VirtgpuTransport>(new VirtgpuTransport(std::move(impl)));
    };

    std::vector<std::string> nodes = opts.node.empty() ? impl->sys->render_nodes() : std::vector{opts.node};
    std::string seen;
    for (const std::string& node : nodes) {
        const int fd = impl->sys->open_node(node);
        if (fd < 0) {
            seen += (seen.empty() ? "" : ", ") + node + " (" + errtext(fd) + ")";
            if (!opts.node.empty()) {
                p.node = node;
                p.error = "cannot open " + node + ": " + errtext(fd);
                return finish(false);
            }
            continue;
        }
        const std::string drv = impl->sys->driver_name(fd);
        if (drv == kVirtioGpuDriver) {
            impl->fd = fd;
            p.node = node;
            p.driver = drv;
            p.is_virtio_gpu = true;
            break;
        }
        seen += (seen.empty() ? "" : ", ") + node + " (" + (drv.empty() ? "no driver name" : drv) + ")";
        impl->sys->close(fd);
    }
    if (impl->fd < 0) {
        p.error = "no virtio_gpu render node" + (seen.empty() ? std::string(" (no DRM render nodes at all)")
                                                              : " (found: " + seen + ")");
        if (!opts.node.empty()) p.node = opts.node;
        return finish(false);
    }
    impl->run_probe();
    return finish(p.usable);
}

VirtgpuTransport::VirtgpuTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

VirtgpuTransport::~VirtgpuTransport() { close(); }

const VirtgpuProbe& VirtgpuTransport::probe() const { return impl_->probe; }

std::string VirtgpuTransport::last_error() const {
    std::lock_guard g(impl_->mu);
    return impl_->last_error;
}

TransportInfo VirtgpuTransport::info() const {
    TransportInfo ti;
    ti.name = "virtgpu";
    ti.detail = impl_->probe.node;
    ti.host_assigns_res_id = false;
    ti.host_page_size = static_cast<uint32_t>(::sysconf(_SC_PAGESIZE));
    return ti;
}

int VirtgpuTransport::get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) {
    Impl& m = *impl_;
    if (m.closed) return -EPIPE;
    wire::virgl_renderer_capset_drm scratch{};
    std::span<uint8_t> buf = out;
    if (buf.empty()) buf = {reinterpret_cast<uint8_t*>(&scratch), sizeof scratch}; // size 0 is -EINVAL (§3.3)
    std::fill(buf.begin(), buf.end(), 0); // bytes past the host's size are left untouched (§3.3)
    wire::drm_virtgpu_get_caps gc{capset_id, version, ptr_u64(buf.data()), static_cast<uint32_t>(buf.size()), 0};
    const int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_GET_CAPS, &gc);
    if (r == -EINVAL || r == -ENOSYS) {
        m.fail(r, "GET_CAPS(" + std::to_string(capset_id) + ", " + std::to_string(version) + "): host lacks the capset");
        return -ENOENT;
    }
    if (r < 0) return m.fail(r, "GET_CAPS(" + std::to_string(capset_id) + ")");
    return static_cast<int>(buf.size());
}

int VirtgpuTransport::context_init(uint32_t capset_id, uint32_t num_rings) {
    Impl& m = *impl_;
    std::lock_guard g(m.submit_mu);
    if (m.closed) return -EPIPE;
    if (m.ctx_inited) return -EEXIST;
    if (num_rings == 0 || num_rings > wire::kVirtgpuMaxRings) return -EINVAL;
    // G4: CAPSET_ID + NUM_RINGS, no POLL_RINGS_MASK (fences are waited on as sync_files).
    wire::drm_virtgpu_context_set_param params[2] = {{wire::VIRTGPU_CONTEXT_PARAM_CAPSET_ID, capset_id},
                                                     {wire::VIRTGPU_CONTEXT_PARAM_NUM_RINGS, num_rings}};
    wire::drm_virtgpu_context_init ci{2, 0, ptr_u64(params)};
    const int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_CONTEXT_INIT, &ci);
    if (r == -EINVAL)
        return m.fail(r, "CONTEXT_INIT(capset " + std::to_string(capset_id) + ", " + std::to_string(num_rings) +
                             " rings) refused: the VMM does not support this context type (a VMM without DRM native "
                             "context support, e.g. QEMU 7.2, answers so)");
    if (r == -EEXIST)
        return m.fail(r, "CONTEXT_INIT: this DRM file already has a context (something used it before fdnc)");
    if (r < 0) return m.fail(r, "CONTEXT_INIT");
    m.ctx_inited = true;
    m.num_rings = num_rings;
    m.timelines.reset(num_rings);
    return 0;
}

int VirtgpuTransport::create_blob(const BlobCreateArgs& args, uint32_t* handle) {
    Impl& m = *impl_;
    if (m.closed) return -EPIPE;
    if (args.cmd.size() % 4 != 0) return -EINVAL;
    wire::drm_virtgpu_resource_create_blob b{};
    b.blob_mem = args.blob_mem;
    b.blob_flags = args.blob_flags;
    b.size = args.size;
    b.cmd_size = static_cast<uint32_t>(args.cmd.size());
    b.cmd = ptr_u64(args.cmd.data());
    b.blob_id = args.blob_id;
    // §3.5: the kernel queues `cmd` to the context first, then the create; it returns at once.
    if (int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &b); r < 0)
        return m.fail(r, "RESOURCE_CREATE_BLOB(blob_id " + std::to_string(args.blob_id) + ")");
    std::lock_guard g(m.mu);
    m.blobs[b.bo_handle] = {b.res_handle, args.size, nullptr, 0};
    *handle = b.bo_handle;
    return 0;
}

int VirtgpuTransport::resource_id(uint32_t handle, uint32_t* res_id, bool* waited) {
    Impl& m = *impl_;
    if (waited) *waited = false;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end()) return -ENOENT;
    *res_id = it->second.res_id;
    return 0;
}

int VirtgpuTransport::execbuf(const ExecbufArgs& args, TransportFence* out_fence) {
    Impl& m = *impl_;
    if (out_fence) *out_fence = {};
    std::lock_guard g(m.submit_mu);
    if (m.closed) return -EPIPE;
    if (!m.ctx_inited || args.ring_idx >= m.num_rings || args.cmd.size() % 4 != 0) return -EINVAL;
    wire::drm_virtgpu_execbuffer eb{};
    eb.flags = wire::VIRTGPU_EXECBUF_RING_IDX;
    eb.size = static_cast<uint32_t>(args.cmd.size());
    eb.command = ptr_u64(args.cmd.data());
    eb.fence_fd = -1;
    eb.ring_idx = args.ring_idx;
    if (args.in_fence_fd >= 0) {
        eb.flags |= wire::VIRTGPU_EXECBUF_FENCE_FD_IN;
        eb.fence_fd = args.in_fence_fd;
    }
    if (args.fence_out) {
        eb.flags |= wire::VIRTGPU_EXECBUF_FENCE_FD_OUT;
        m.timelines.reap(args.ring_idx); // keeps at most the unretired sync_files open
    }
    if (int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_EXECBUFFER, &eb); r < 0)
        return m.fail(r, "EXECBUFFER(ring " + std::to_string(args.ring_idx) + ")");
    if (args.fence_out) {
        if (eb.fence_fd < 0) return m.fail(-EIO, "EXECBUFFER returned no out-fence");
        const uint64_t point = m.timelines.reserve(args.ring_idx);
        m.timelines.attach(args.ring_idx, point, eb.fence_fd);
        if (out_fence) *out_fence = {args.ring_idx, point};
    }
    return 0;
}

int VirtgpuTransport::wait_fence(TransportFence fence, int64_t timeout_ns) {
    if (!fence) return 0;
    Impl& m = *impl_;
    int fd = -1;
    switch (m.timelines.lookup(fence.ring_idx, fence.point, &fd)) {
    case FenceLookup::Signaled: return 0;
    case FenceLookup::Unknown: return m.closed ? -EPIPE : -EINVAL;
    case FenceLookup::Pending: return -EIO; // never: the kernel hands the fd out with the ioctl
    case FenceLookup::Pollable: break;
    }
    if (timeout_ns != 0 && poll_fence_fd(fd, 0) != 0) note_host_block("fence");
    const int r = poll_fence_fd(fd, timeout_ns);
    ::close(fd);
    if (r == 0) m.timelines.mark_signaled(fence.ring_idx, fence.point);
    return r;
}

int VirtgpuTransport::map_blob(uint32_t handle, uint64_t size, void** ptr) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end()) return -ENOENT;
    Impl::Blob& b = it->second;
    if (b.map) {
        if (size > b.map_size) return -EINVAL;
        *ptr = b.map;
        return 0;
    }
    if (m.closed) return -EPIPE;
    if (size == 0) return -EINVAL;
    wire::drm_virtgpu_map mp{0, handle, 0};
    if (int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_MAP, &mp); r < 0) {
        m.last_error = "VIRTGPU_MAP(handle " + std::to_string(handle) + "): " + errtext(r);
        return r;
    }
    void* p = m.sys->mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, static_cast<off_t>(mp.offset));
    if (p == MAP_FAILED) {
        const int r = -errno;
        m.last_error = "mmap of handle " + std::to_string(handle) + ": " + errtext(r);
        return r;
    }
    b.map = p;
    b.map_size = size;
    *ptr = p;
    return 0;
}

void VirtgpuTransport::unmap_blob(uint32_t handle, void* ptr, uint64_t) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end() || !it->second.map || it->second.map != ptr) return;
    m.sys->munmap(it->second.map, it->second.map_size);
    it->second.map = nullptr;
    it->second.map_size = 0;
}

int VirtgpuTransport::close_blob(uint32_t handle) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end()) return -ENOENT;
    if (it->second.map) m.sys->munmap(it->second.map, it->second.map_size);
    m.blobs.erase(it);
    if (m.closed) return -EPIPE;
    // B15: the kernel detaches the resource from the context when the last GEM reference goes.
    wire::drm_gem_close_arg c{handle, 0};
    if (int r = m.sys->ioctl(m.fd, wire::kDrmIoctlGemClose, &c); r < 0) {
        m.last_error = "GEM_CLOSE(" + std::to_string(handle) + "): " + errtext(r);
        return r;
    }
    return 0;
}

int VirtgpuTransport::export_blob_fd(uint32_t handle, int* fd) {
    Impl& m = *impl_;
    {
        std::lock_guard g(m.mu);
        if (!m.blobs.count(handle)) return -ENOENT;
        if (m.closed) return -EPIPE;
    }
    if (int r = m.sys->prime_handle_to_fd(m.fd, handle, fd); r < 0)
        return m.fail(r, "PRIME_HANDLE_TO_FD(" + std::to_string(handle) + ")");
    return 0;
}

int VirtgpuTransport::import_blob_fd(int fd, uint32_t* handle, uint64_t* size) {
    Impl& m = *impl_;
    if (m.closed) return -EPIPE;
    uint32_t h = 0;
    // The kernel returns the same GEM handle for a dma-buf this file already knows: dedup for free.
    if (int r = m.sys->prime_fd_to_handle(m.fd, fd, &h); r < 0) return m.fail(r, "PRIME_FD_TO_HANDLE");
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(h);
    if (it != m.blobs.end()) {
        *handle = h;
        if (size) *size = it->second.size;
        return 0;
    }
    wire::drm_virtgpu_resource_info ri{h, 0, 0, 0};
    if (int r = m.sys->ioctl(m.fd, wire::DRM_IOCTL_VIRTGPU_RESOURCE_INFO, &ri); r < 0) {
        m.last_error = "RESOURCE_INFO(" + std::to_string(h) + "): " + errtext(r);
        wire::drm_gem_close_arg c{h, 0};
        m.sys->ioctl(m.fd, wire::kDrmIoctlGemClose, &c);
        return r;
    }
    // RESOURCE_INFO.size is 32 bits; a dma-buf knows its full size.
    const off_t end = ::lseek(fd, 0, SEEK_END);
    const uint64_t sz = end > 0 ? static_cast<uint64_t>(end) : ri.size;
    m.blobs[h] = {ri.res_handle, sz, nullptr, 0};
    *handle = h;
    if (size) *size = sz;
    return 0;
}

void VirtgpuTransport::close() {
    Impl& m = *impl_;
    std::lock_guard s(m.submit_mu);
    std::lock_guard g(m.mu);
    if (m.closed) return;
    m.closed = true;
    for (auto& [h, b] : m.blobs)
        if (b.map) m.sys->munmap(b.map, b.map_size);
    m.blobs.clear();
    m.timelines.reset(0);
    // Closing the DRM file destroys the context and every GEM handle with it.
    if (m.fd >= 0) m.sys->close(m.fd);
    m.fd = -1;
}

} // namespace fdnc
