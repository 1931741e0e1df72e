// Fault-injection matrix (issue 8): one injected host/transport failure per case. Each case checks
// the error the client sees (named errno or a lost device), that every wait returns within its
// bound (sync_timeout_ns; a hang would trip meson's timeout), and the teardown invariant: nothing
// left in the iova heap or the quarantine (ASan checks leaks in scripts/sanitize.sh).
#include <cerrno>
#include <string>

#include "faulty_hosts.h"
#include "reliability_fixture.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {

InprocConfig fast_host(uint64_t gpu_us = 0) {
    InprocConfig ic;
    ic.gpu_us = gpu_us;
    return ic;
}

// A kernel failure behind a queued GEM_NEW is invisible to bo_new (it never waits on the host,
// §6.4a): it shows up as shmem.async_error, i.e. a lost device, by the next wait.
void check_gem_new_failure(host::KernelOp op, int err) {
    InprocStack st(fast_host(), bounded_options(false, false));
    Device& dev = *st.dev;
    int e = 0;
    Pipe* pipe = dev.pipe_new(0, &e);
    REQUIRE(pipe);
    BoPtr cmd = make_bo(dev, 4096);
    uint32_t fence = 0;
    REQUIRE(submit(*pipe, *cmd, {}, &fence) == 0);
    REQUIRE(pipe->wait(fence, kShortTimeoutNs) == 0);

    st.model->inject_kernel_failure(op, 1, -err);
    BoPtr victim = make_bo(dev, 1 << 20); // queued GEM_NEW: bo_new itself succeeds
    const int r = submit(*pipe, *cmd, {victim.get()}, &fence);
    if (r == 0) {
        const int w = pipe->wait(fence, kShortTimeoutNs);
        CHECK((w == 0 || w == -EIO));
    } else {
        CHECK(r == -EIO);
    }
    CHECK(dev.status() == -EIO);
    CHECK(dev.stats().context_lost);
    CHECK(dev.stats().async_errors >= 1);
    CHECK(st.model->async_error(st.ctx()) >= 1);

    // Later calls fail with the documented errno instead of talking to a dead context.
    Bo* late = dev.bo_new(4096, 0, "late", &e);
    CHECK(late == nullptr);
    CHECK(e == -ENOMEM);
    CHECK(dev.pipe_new(0, &e) == nullptr);
    CHECK(e == -EIO);
    CHECK(submit(*pipe, *cmd, {}, &fence) == -EIO);

    victim.reset();
    cmd.reset();
    delete pipe;
    check_clean_teardown(dev);
}

} // namespace

TEST_CASE("a GEM_NEW failing in the host kernel loses the device with a clear errno", "[fault]") {
    const int err = GENERATE(ENOSPC, EBUSY, ENOMEM);
    INFO("kernel GEM_NEW fails with " << err);
    check_gem_new_failure(host::KernelOp::GemNew, err);
}

TEST_CASE("a SET_IOVA failing in the host kernel loses the device with a clear errno", "[fault]") {
    const int err = GENERATE(ENOSPC, EBUSY, ENOMEM);
    INFO("kernel SET_IOVA fails with " << err);
    check_gem_new_failure(host::KernelOp::SetIova, err);
}

TEST_CASE("an async_error raised mid-frame fails the next submit with EIO", "[fault]") {
    InprocStack st(fast_host(200), bounded_options());
    Device& dev = *st.dev;
    FrameInFlight frame(dev, 256 << 10); // first half of the frame in flight
    st.model->raise_async_error(st.ctx());
    uint32_t fence2 = 0;
    CHECK(submit(*frame.pipe, *frame.cmd, {frame.buf.get()}, &fence2) == -EIO);
    CHECK(dev.status() == -EIO);
    CHECK(dev.stats().async_errors >= 1);
    // The work already queued still retires (or reports the loss) within the bound.
    const int w = frame.pipe->wait(frame.fence, kShortTimeoutNs);
    CHECK((w == 0 || w == -EIO));
    frame.release();
    check_clean_teardown(dev);
}

TEST_CASE("a host that never answers makes synchronous calls time out", "[fault]") {
    SwallowingHost* swallow = nullptr;
    // No cache/suballocation: the freed bo must own its range for the quarantine check below.
    InprocStack st(fast_host(), bounded_options(false, false), [&](Host& h) {
        auto w = std::make_unique<SwallowingHost>(h);
        swallow = w.get();
        return w;
    });
    Device& dev = *st.dev;
    int e = 0;
    Pipe* pipe = dev.pipe_new(0, &e);
    REQUIRE(pipe);
    BoPtr cmd = make_bo(dev, 4096);
    swallow->armed = true; // from here shmem.seqno never advances and no fence retires

    CHECK(dev.pipe_new(1, &e) == nullptr); // SUBMITQUEUE_NEW waits for its response
    CHECK(e == -ETIMEDOUT);
    uint32_t fence = 0;
    REQUIRE(submit(*pipe, *cmd, {}, &fence) == 0); // submits are asynchronous
    CHECK(pipe->wait(fence, kShortTimeoutNs) == -ETIMEDOUT);
    CHECK(cmd->cpu_prep(pipe, wire::MSM_PREP_READ, kShortTimeoutNs) == -ETIMEDOUT);

    // Safety over tidiness: the GPU may still run that submit, so its bo's range stays parked.
    cmd.reset();
    dev.retire();
    dev.trim_cache();
    CHECK(dev.quarantined_ranges() >= 1);
    delete pipe; // drains for at most sync_timeout_ns
}

TEST_CASE("a response slot overwritten with garbage fails the call with EPROTO", "[fault]") {
    GarbageSlotHost* garbage = nullptr;
    InprocStack st(fast_host(), bounded_options(), [&](Host& h) {
        auto w = std::make_unique<GarbageSlotHost>(h);
        garbage = w.get();
        return w;
    });
    Device& dev = *st.dev;
    garbage->armed = true;
    int e = 0;
    CHECK(dev.pipe_new(0, &e) == nullptr); // SUBMITQUEUE_NEW's slot len is 0xdeadbeef
    CHECK(e == -EPROTO);
    CHECK(garbage->corrupted >= 1);
    garbage->armed = false;
    Pipe* pipe = dev.pipe_new(0, &e); // the device stays usable: the slot was one call's problem
    REQUIRE(pipe);
    delete pipe;
    check_clean_teardown(dev);
}

TEST_CASE("the in-process host dying mid-frame fails waits with EPIPE", "[fault]") {
    InprocStack st(fast_host(50'000), bounded_options());
    Device& dev = *st.dev;
    FrameInFlight frame(dev, 64 << 10); // 50 ms of GPU work in flight
    st.transport->simulate_host_death();
    CHECK(frame.pipe->wait(frame.fence, kShortTimeoutNs) == -EPIPE);
    int e = 0;
    CHECK(dev.pipe_new(1, &e) == nullptr);
    CHECK(e == -EPIPE);
    CHECK(dev.status() == -EIO); // that request was dropped with the stream: the context is lost
    CHECK(dev.bo_new(4096, 0, "late", &e) == nullptr);
    CHECK(e == -ENOMEM);
    frame.release();
    // A dead host runs nothing anymore; the guest may keep its ranges parked, but must not hang.
    dev.retire();
    dev.trim_cache();
    CHECK(dev.stats().bos_live == 0);
}
