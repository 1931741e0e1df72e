// "bo_new never waits on the host" (DESIGN.md), proven against hosts that never answer: the
// in-process host stalled (inproc:stall=1) and a stopped fdnc-hostsim (SIGSTOP). A bo_new that
// waited could only time out there, so it would fail. Each case has its negative control: host
// mode, which must wait, fails on the same host and is counted as one bo_new wait.
#include <catch2/catch.hpp>

#include <cerrno>
#include <vector>

#include "capi/open_device.h"
#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "hostsim_process.h"
#include "transports/vtest_transport.h"

using namespace fdnc;

namespace {

constexpr int64_t kSyncTimeoutNs = 200'000'000;

DeviceOptions plain(IovaMode mode) {
    DeviceOptions o;
    o.bo_cache = false; // every bo_new reaches the iova path and the host stream
    o.suballoc = false;
    o.iova_mode = mode;
    o.sync_timeout_ns = kSyncTimeoutNs;
    return o;
}

// n bo_news of mixed sizes; returns how many succeeded. Frees nothing: no retire path is involved.
int new_bos(Device& dev, int n, std::vector<Bo*>* out, int* first_err) {
    *first_err = 0;
    for (int i = 0; i < n; ++i) {
        int err = 0;
        Bo* bo = dev.bo_new(4096u << (i % 6), 0, "no-wait", &err);
        if (!bo) {
            *first_err = err;
            return i;
        }
        out->push_back(bo);
    }
    return n;
}

} // namespace

TEST_CASE("bo_new returns with the in-process host stalled, and never counts a wait", "[no_wait]") {
    std::string err;
    auto dev = open_device("inproc:stall=1", plain(IovaMode::Guest), &err);
    INFO(err);
    REQUIRE(dev);
    std::vector<Bo*> bos;
    int first_err = 0;
    CHECK(new_bos(*dev, 500, &bos, &first_err) == 500);
    CHECK(first_err == 0);
    CHECK(dev->stats().bo_new_waits == 0);
    for (Bo* bo : bos) bo->unref();
}

TEST_CASE("on a stalled in-process host, host mode times out in bo_new and counts the wait", "[no_wait]") {
    std::string err;
    auto dev = open_device("inproc:stall=1", plain(IovaMode::Host), &err);
    INFO(err);
    REQUIRE(dev);
    std::vector<Bo*> bos;
    int first_err = 0;
    CHECK(new_bos(*dev, 1, &bos, &first_err) == 0);
    CHECK(first_err != 0);
    CHECK(dev->stats().bo_new_waits == 1);
}

// A device over a fresh fdnc-hostsim, which is then stopped (SIGSTOP) until `resume()`.
struct StoppedHostsim {
    test::HostsimProcess hs;
    std::unique_ptr<Device> dev;
    explicit StoppedHostsim(IovaMode mode) {
        REQUIRE(hs.ok());
        VtestOptions vo;
        vo.socket_path = hs.socket_path();
        vo.io_timeout_ms = 300; // a blocked read or write fails after this
        std::string err;
        auto t = VtestTransport::connect(vo, &err);
        REQUIRE(t);
        dev = Device::open(std::move(t), plain(mode), &err);
        INFO(err);
        REQUIRE(dev);
        hs.pause();
    }
};

TEST_CASE("bo_new returns with the vtest server stopped, as long as the socket buffer lasts", "[no_wait][vtest]") {
    StoppedHostsim s(IovaMode::Guest);
    // 200 creates: below the transport's bound on unread replies (256) and well inside the
    // socket buffer (each is one write of a GEM_NEW batch and a blob create).
    std::vector<Bo*> bos;
    int first_err = 0;
    const int made = new_bos(*s.dev, 200, &bos, &first_err);
    const uint64_t waits = s.dev->stats().bo_new_waits;
    s.hs.resume();
    CHECK(made == 200);
    CHECK(first_err == 0);
    CHECK(waits == 0);
    for (Bo* bo : bos) bo->unref();
}

TEST_CASE("with the vtest server stopped, host mode fails in bo_new and counts the wait", "[no_wait][vtest]") {
    StoppedHostsim s(IovaMode::Host);
    std::vector<Bo*> bos;
    int first_err = 0;
    const int made = new_bos(*s.dev, 1, &bos, &first_err);
    const uint64_t waits = s.dev->stats().bo_new_waits;
    s.hs.resume();
    CHECK(made == 0);
    CHECK(first_err != 0);
    CHECK(waits == 1);
}
