// FakeVirtgpu: a DrmIoctl that plays the guest kernel's virtio-gpu driver over a fdnc::Host, so
// VirtgpuTransport (and everything above it) runs over the real ioctl encoding without a guest.
// Resource ids and GEM handles are assigned like the kernel does (per device / per file, from 1),
// fences are eventfds that become readable when the host retires them (a sync_file stand-in),
// VIRTGPU_MAP + mmap hand out the host's memory. Probe failures are injectable.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "virtio_proto/host.h"
#include "transports/virtgpu_transport.h"

namespace fdnc::test {

struct FakeVirtgpuConfig {
    std::string node = "/dev/dri/renderD128";
    std::string driver = "virtio_gpu";
    std::vector<std::pair<std::string, std::string>> other_nodes; // e.g. {renderD129, "i915"} listed first
    bool has_3d = true;
    bool has_context_init = true; // false: GETPARAM(CONTEXT_INIT) and (SUPPORTED_CAPSET_IDs) -> -EINVAL
    bool has_blob = true;
    bool has_host_visible = true;
    uint64_t capset_mask = 1ull << 6; // DRM capset
    int context_init_error = 0;       // e.g. -EINVAL (a VMM without native contexts)
    int open_error = 0;               // e.g. -EACCES
};

class FakeVirtgpu : public DrmIoctl {
public:
    FakeVirtgpu(Host& host, FakeVirtgpuConfig cfg = {});
    ~FakeVirtgpu() override;

    std::vector<std::string> render_nodes() override;
    int open_node(const std::string& path) override;
    std::string driver_name(int fd) override;
    int ioctl(int fd, unsigned long request, void* arg) override;
    void* mmap(size_t len, int prot, int flags, int fd, off_t offset) override;
    void munmap(void* ptr, size_t len) override;
    void close(int fd) override;

    // Counters for tests.
    uint64_t ioctls(unsigned long request) const;
    uint64_t host_errors() const { return host_errors_; }
    uint32_t ctx_id() const { return ctx_id_; }
    size_t live_handles() const;

private:
    int getparam(void* arg);
    int get_caps(void* arg);
    int context_init(void* arg);
    int create_blob(void* arg);
    int execbuf(void* arg);
    int map(void* arg);
    int resource_info(void* arg);
    int gem_close(void* arg);
    int prime_to_fd(void* arg);
    int prime_to_handle(void* arg);

    struct Bo {
        uint32_t res_id = 0;
        uint64_t size = 0;
        uint32_t blob_mem = 0;
        uint32_t blob_flags = 0;
    };
    Host& host_;
    FakeVirtgpuConfig cfg_;
    mutable std::mutex mu_;
    int file_fd_ = -1; // the one open "DRM file" (an eventfd standing in)
    std::map<int, std::string> other_fds_;
    uint32_t ctx_id_;
    bool ctx_ = false;
    uint32_t num_rings_ = 0;
    uint32_t next_handle_ = 1;
    std::map<uint32_t, Bo> bos_;                       // GEM handle -> bo
    std::map<uint32_t, bool> res_ids_;                 // the device's resource id allocator
    std::map<uint64_t, uint32_t> map_offsets_;         // fake mmap offset -> handle
    std::map<std::pair<dev_t, ino_t>, uint32_t> exported_; // dma-buf identity -> res_id
    struct FenceState;
    std::shared_ptr<FenceState> fences_; // shared with the host's fence callback
    uint64_t next_fence_ = 0;
    std::map<unsigned long, uint64_t> counts_;
    std::atomic<uint64_t> host_errors_{0};
};

} // namespace fdnc::test
