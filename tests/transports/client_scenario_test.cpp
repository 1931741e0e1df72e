// The fd_bo client over the real transports: bo_new, map, submit, wait, free, over vtest (a real
// fdnc-hostsim process) and over virtgpu (FakeVirtgpu ioctls into host_sim).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <memory>

#include "fake_virtgpu.h"
#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"
#include "host_sim/msm_renderer.h"
#include "hostsim_process.h"
#include "transports/virtgpu_transport.h"
#include "transports/vtest_transport.h"

using namespace fdnc;

namespace {

// bo_new x n, one submit using them all, wait, free; the host must see no fault and no error.
void run_scenario(Device& dev) {
    int err = 0;
    Pipe* pipe = dev.pipe_new(0, &err);
    INFO("pipe_new err " << err);
    REQUIRE(pipe);
    const uint64_t waits_before = dev.stats().host_waits;
    std::vector<Bo*> bos;
    for (int i = 0; i < 32; ++i) {
        Bo* bo = dev.bo_new(64 * 1024, 0, "scenario", &err);
        INFO("bo_new err " << err);
        REQUIRE(bo);
        CHECK(bo->iova() >= dev.va_range_start());
        bos.push_back(bo);
    }
    // DESIGN.md "never waits on the host": no bo_new blocked, whatever the transport.
    CHECK(dev.stats().host_waits == waits_before);
    void* p = bos[0]->map(&err);
    REQUIRE(p);
    std::memset(p, 0, 64);
    uint32_t fence = 0;
    {
        Submit s(pipe);
        REQUIRE(s.add_cmd(bos[0], 0, 64) == 0);
        for (size_t i = 1; i < bos.size(); ++i)
            REQUIRE(s.add_bo(bos[i], wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE) >= 0);
        REQUIRE(s.flush(&fence) == 0);
    }
    CHECK(pipe->wait(fence, 10'000'000'000) == 0);
    for (Bo* bo : bos) bo->unref();
    delete pipe;
    dev.retire();
    const DeviceStats st = dev.stats();
    CHECK(st.faults == 0);
    CHECK(st.async_errors == 0);
    CHECK_FALSE(st.context_lost);
    CHECK(dev.status() == 0);
}

} // namespace

// FDNC_VTEST_SOCKET: run against a server that is already there (the realhost suite points it at
// fdnc-hostsim and at the real virgl_test_server in turn) instead of a fresh fdnc-hostsim.
const char* external_server() { return std::getenv("FDNC_VTEST_SOCKET"); }

TEST_CASE("the fd_bo client runs a bo_new/submit/wait/free scenario over vtest", "[scenario][vtest]") {
    std::optional<test::HostsimProcess> hs;
    if (!external_server()) {
        hs.emplace();
        REQUIRE(hs->ok());
    }
    VtestOptions o;
    o.socket_path = external_server() ? external_server() : hs->socket_path();
    std::string err;
    auto t = VtestTransport::connect(o, &err);
    REQUIRE(t);
    auto dev = Device::open(std::move(t), {}, &err);
    INFO(err);
    REQUIRE(dev);
    run_scenario(*dev);
    dev.reset();
    if (hs) CHECK(hs->log().find("dropped") == std::string::npos);
}

TEST_CASE("the fd_bo client runs a bo_new/submit/wait/free scenario over virtgpu ioctls", "[scenario][virtgpu]") {
    host::MsmRenderer host;
    auto fake = std::make_shared<test::FakeVirtgpu>(host);
    std::string err;
    auto t = VirtgpuTransport::open({"", fake}, &err);
    REQUIRE(t);
    auto dev = Device::open(std::move(t), {}, &err);
    INFO(err);
    REQUIRE(dev);
    run_scenario(*dev);
    CHECK(host.global_faults() == 0);
    CHECK(fake->host_errors() == 0);
    dev.reset();
    CHECK(fake->live_handles() == 0);
}

// With FDNC_VTEST_SOCKET the server must have been started with a 300 ms GPU time per submit.
TEST_CASE("over vtest with a slow GPU a stalled fence wait sends one kick and still completes", "[scenario][vtest][slowgpu]") {
    std::optional<test::HostsimProcess> hs;
    if (!external_server()) {
        hs.emplace(std::vector<std::string>{"--gpu-us", "300000"});
        REQUIRE(hs->ok());
    }
    VtestOptions o;
    o.socket_path = external_server() ? external_server() : hs->socket_path();
    std::string err;
    auto vt = VtestTransport::connect(o, &err);
    REQUIRE(vt);
    VtestTransport* raw = vt.get();
    auto dev = Device::open(std::move(vt), {}, &err);
    INFO(err);
    REQUIRE(dev);
    run_scenario(*dev);
    // The GPU takes 300 ms and a wait kicks after 50 ms without a signal (§12.3 workaround).
    CHECK(raw->stall_kicks() >= 1);
    dev.reset();
    if (hs) CHECK(hs->log().find("dropped") == std::string::npos);
}
