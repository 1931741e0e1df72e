// Fault-case helpers over the shared in-process stack (tests/common/inproc_stack.h), and the
// teardown invariant every fault case ends with.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"
#include "common/inproc_stack.h"
#include "host_sim/msm_renderer.h"

namespace fdnc::test {

inline constexpr int64_t kShortTimeoutNs = 300'000'000; // every wait in these tests is bounded

// InprocStack: the shared in-process stack (tests/common/inproc_stack.h).

inline DeviceOptions bounded_options(bool cache = true, bool suballoc = true) {
    DeviceOptions o;
    o.bo_cache = cache;
    o.suballoc = suballoc;
    o.sync_timeout_ns = kShortTimeoutNs;
    return o;
}

// After the client dropped everything: caches and heap blocks released, retired work reaped;
// then nothing may be live in the iova heap or parked in the quarantine.
inline void check_clean_teardown(Device& dev) {
    dev.poll_fences();
    dev.retire();
    dev.trim_cache();
    dev.trim_heaps();
    dev.retire();
    const DeviceStats s = dev.stats();
    CHECK(s.bos_live == 0);
    CHECK(dev.heap_stats().live_ranges == 0);
    CHECK(dev.quarantined_ranges() == 0);
}

struct BoUnref {
    void operator()(Bo* b) const {
        if (b) b->unref();
    }
};
using BoPtr = std::unique_ptr<Bo, BoUnref>;

inline BoPtr make_bo(Device& dev, uint64_t size, uint32_t flags = 0) {
    int err = 0;
    Bo* b = dev.bo_new(size, flags, "reliability", &err);
    INFO("bo_new(" << size << ") err " << err);
    REQUIRE(b);
    return BoPtr(b);
}

// One submit of `cmd` (first 64 bytes) plus extra bos. Returns flush()'s result; *fence the seqno.
inline int submit(Pipe& pipe, Bo& cmd, std::initializer_list<Bo*> extra, uint32_t* fence) {
    Submit s(&pipe);
    if (int r = s.add_cmd(&cmd, 0, 64); r < 0) return r;
    for (Bo* b : extra)
        if (int r = s.add_bo(b, wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE); r < 0) return r;
    return s.flush(fence);
}

// A frame in flight, the starting point of the mid-frame fault cases: a pipe, a command bo and one
// buffer, submitted once. release() drops them in the order a client would (bos, then the pipe).
struct FrameInFlight {
    std::unique_ptr<Pipe> pipe;
    BoPtr cmd, buf;
    uint32_t fence = 0;

    FrameInFlight(Device& dev, uint64_t buf_size) {
        int e = 0;
        pipe.reset(dev.pipe_new(0, &e));
        INFO("pipe_new err " << e);
        REQUIRE(pipe);
        cmd = make_bo(dev, 4096);
        buf = make_bo(dev, buf_size);
        REQUIRE(submit(*pipe, *cmd, {buf.get()}, &fence) == 0);
    }
    void release() {
        buf.reset();
        cmd.reset();
        pipe.reset();
    }
};

} // namespace fdnc::test
