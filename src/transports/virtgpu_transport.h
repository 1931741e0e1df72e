// VirtgpuTransport: a native context through the guest kernel's virtio-gpu driver (PROTOCOL.md §3),
// i.e. what runs inside a crosvm/QEMU guest. Resource ids come back from the blob-create ioctl at
// once (the kernel assigns them), so nothing here waits on the host except fence waits and maps.
// Fences are the kernel's sync_file fds (EXECBUFFER FENCE_FD_OUT on a ring), polled with a timeout.
//
// Every kernel entry goes through DrmIoctl so a test fake can serve the same ioctls from host_sim
// (tests/transports/fake_virtgpu.*): the whole client stack runs over real ioctl encoding.
// fdnc's own structs (virtgpu_uapi.h) are used; libdrm only for open/version/ioctl/prime.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "virtio_proto/transport.h"

namespace fdnc {

// The system calls the transport makes, injectable. Return 0 / an fd, or -errno.
class DrmIoctl {
public:
    virtual ~DrmIoctl() = default;
    virtual std::vector<std::string> render_nodes() = 0;     // candidate device paths
    virtual int open_node(const std::string& path) = 0;      // fd or -errno
    virtual std::string driver_name(int fd) = 0;              // drmGetVersion()->name, "" if none
    virtual int ioctl(int fd, unsigned long request, void* arg) = 0; // restarts on EINTR/EAGAIN
    virtual void* mmap(size_t len, int prot, int flags, int fd, off_t offset) = 0; // MAP_FAILED + errno
    virtual void munmap(void* ptr, size_t len) = 0;
    virtual void close(int fd) = 0;
    virtual int prime_handle_to_fd(int fd, uint32_t handle, int* out_fd); // default: the ioctl
    virtual int prime_fd_to_handle(int fd, int prime_fd, uint32_t* handle);
};

// The real thing: libdrm (drmGetDevices2, drmGetVersion, drmIoctl, drmPrime*) and the kernel.
std::shared_ptr<DrmIoctl> make_libdrm_ioctl();

// What the device offers; fdnc-info prints it. `usable` = a native context can be created.
struct VirtgpuProbe {
    std::string node;   // render node path that was probed
    std::string driver; // its DRM driver name
    bool is_virtio_gpu = false;
    bool has_3d = false;
    bool has_blob = false;
    bool has_host_visible = false;
    bool has_context_init = false;
    bool has_cross_device = false;
    uint64_t capset_mask = 0; // SUPPORTED_CAPSET_IDs, bit N = capset N
    bool has_drm_capset = false;
    bool usable = false;
    std::string error; // the first missing capability, errno text included
};

struct VirtgpuOptions {
    std::string node;              // empty: the first render node whose driver is virtio_gpu
    std::shared_ptr<DrmIoctl> sys; // null: make_libdrm_ioctl()
};

class VirtgpuTransport : public Transport {
public:
    // Opens and probes the node. nullptr + *error when no virtio_gpu node is found or a capability
    // a native context needs is missing; *probe (if given) is filled either way.
    static std::unique_ptr<VirtgpuTransport> open(const VirtgpuOptions& opts, std::string* error,
                                                  VirtgpuProbe* probe = nullptr);
    ~VirtgpuTransport() override;
    VirtgpuTransport(const VirtgpuTransport&) = delete;
    VirtgpuTransport& operator=(const VirtgpuTransport&) = delete;

    TransportInfo info() const override;
    // The kernel does not report the host's capset size: returns out.size() (bytes requested;
    // the kernel copied min(out.size(), host size) and the rest stays zero, §3.3).
    int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) override;
    int context_init(uint32_t capset_id, uint32_t num_rings) override;
    int create_blob(const BlobCreateArgs& args, uint32_t* handle) override;
    int resource_id(uint32_t handle, uint32_t* res_id, bool* waited = nullptr) override;
    int execbuf(const ExecbufArgs& args, TransportFence* out_fence) override;
    int wait_fence(TransportFence fence, int64_t timeout_ns) override;
    int map_blob(uint32_t handle, uint64_t size, void** ptr) override;
    void unmap_blob(uint32_t handle, void* ptr, uint64_t size) override;
    int close_blob(uint32_t handle) override;
    int export_blob_fd(uint32_t handle, int* fd) override;
    int import_blob_fd(int fd, uint32_t* handle, uint64_t* size) override;
    void close() override;

    const VirtgpuProbe& probe() const;
    std::string last_error() const; // the reason of the last failed call, errno text included

    struct Impl;

private:
    explicit VirtgpuTransport(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace fdnc
