// Raw access to the guest kernel's virtio_gpu render node, bypassing fdnc's transport, so the
// guest suite can compare what VirtgpuTransport's probe says with what the kernel answers.
#pragma once

#include <cstdint>
#include <string>

namespace fdnc::guest_test {

// The first /dev/dri/renderD* whose DRM driver is virtio_gpu ("" when there is none).
// $FDNC_GUEST_NODE overrides the search.
std::string find_virtio_gpu_node();

// An open render node, closed on destruction.
class RealNode {
public:
    explicit RealNode(const std::string& path);
    ~RealNode();
    RealNode(const RealNode&) = delete;
    RealNode& operator=(const RealNode&) = delete;

    int fd() const { return fd_; }
    int open_error() const { return open_error_; } // -errno of open(), 0 when open
    std::string driver() const;                     // drmGetVersion name
    std::string version() const;                    // "major.minor.patch (date)"

    // Each returns 0 or -errno straight from the kernel.
    int getparam(uint64_t param, uint64_t* value) const;
    int get_caps(uint32_t capset_id, uint32_t version, void* buf, uint32_t size) const;
    int context_init(uint32_t capset_id, uint32_t num_rings) const;

private:
    int fd_ = -1;
    int open_error_ = 0;
};

// "EINVAL" for -EINVAL / EINVAL, "0" for 0.
std::string errno_name(int err);

// One line with everything the node offers (for the CI log).
std::string describe_node(const std::string& path);

} // namespace fdnc::guest_test
