// The fake node as the drm_shim tests open it: FDNC_SHIM_NODE (meson sets it for the test) opened
// read/write, with the ioctl helpers both tests use. Each test derives its own Node from it.
#pragma once

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>
#include <xf86drm.h>

#include "virtio_proto/msm_uapi.h"

namespace fdnc::test {

struct ShimNode {
    int fd = -1;
    ShimNode() {
        const char* path = std::getenv("FDNC_SHIM_NODE");
        if (!path)
            FAIL("FDNC_SHIM_NODE is not set: run this test through `meson test --suite drm_shim`");
        fd = ::open(path, O_RDWR | O_CLOEXEC);
        REQUIRE(fd >= 0);
    }
    ~ShimNode() {
        if (fd >= 0)
            ::close(fd);
    }
    ShimNode(const ShimNode&) = delete;
    ShimNode& operator=(const ShimNode&) = delete;

    int ioctl_err(unsigned long req, void* arg) const { return ::ioctl(fd, req, arg) == 0 ? 0 : -errno; }
    uint64_t param(uint32_t p) const {
        wire::drm_msm_param a{wire::MSM_PIPE_3D0, p, 0, 0, 0};
        REQUIRE(ioctl_err(wire::DRM_IOCTL_MSM_GET_PARAM, &a) == 0);
        return a.value;
    }
    uint32_t bo(uint64_t size, uint32_t flags = wire::MSM_BO_WC) const {
        wire::drm_msm_gem_new a{size, flags, 0};
        REQUIRE(ioctl_err(wire::DRM_IOCTL_MSM_GEM_NEW, &a) == 0);
        return a.handle;
    }
    int gem_close(uint32_t handle) const {
        drm_gem_close c{handle, 0};
        return ioctl_err(DRM_IOCTL_GEM_CLOSE, &c);
    }
};

} // namespace fdnc::test
