// Shared helpers for the fd_bo suite: a device over the in-process host_sim host (the stack
// itself: tests/common/inproc_stack.h).
#pragma once

#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "capi/open_device.h"
#include "common/inproc_stack.h"
#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"

namespace fdnc::test {

inline std::unique_ptr<Device> open_test_device(const std::string& uri, DeviceOptions opts = {}) {
    std::string err;
    auto dev = open_device(uri, opts, &err);
    INFO("open_device(" << uri << "): " << err);
    REQUIRE(dev);
    return dev;
}

struct BoDeleter {
    void operator()(Bo* bo) const {
        if (bo) bo->unref();
    }
};
using BoRef = std::unique_ptr<Bo, BoDeleter>;

inline BoRef new_bo(Device& dev, uint64_t size, uint32_t flags = 0, const char* name = nullptr) {
    int err = 0;
    Bo* bo = dev.bo_new(size, flags, name, &err);
    INFO("bo_new(" << size << ") err " << err);
    REQUIRE(bo);
    return BoRef(bo);
}

// One submit on pipe using bo as a command buffer (first 64 bytes) plus extra bos; returns its fence.
inline uint32_t submit_with(Pipe& pipe, Bo& cmd, std::initializer_list<Bo*> extra = {}) {
    Submit s(&pipe);
    REQUIRE(s.add_cmd(&cmd, 0, 64) == 0);
    for (Bo* b : extra) REQUIRE(s.add_bo(b, wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE) >= 0);
    uint32_t fence = 0;
    REQUIRE(s.flush(&fence) == 0);
    REQUIRE(fence != 0);
    return fence;
}

} // namespace fdnc::test
