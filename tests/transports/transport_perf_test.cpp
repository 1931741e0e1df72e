// Measurements, not assertions (hidden: run with `test_transports "[.perf]"`): pipelined blob
// creates and fenced round trips over vtest (a real fdnc-hostsim process) and over the virtgpu
// ioctl fake.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <vector>

#include "fake_virtgpu.h"
#include "host_sim/msm_renderer.h"
#include "hostsim_process.h"
#include "transport_helpers.h"
#include "transports/virtgpu_transport.h"
#include "transports/vtest_transport.h"

using namespace fdnc;
using Clock = std::chrono::steady_clock;

namespace {

double us_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

void measure(const char* name, Transport& t) {
    REQUIRE(t.context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    uint32_t shmem = 0;
    void* p = nullptr;
    REQUIRE(t.create_blob(test::shmem_args(), &shmem) == 0);
    REQUIRE(t.map_blob(shmem, test::kShmemSize, &p) == 0);
    int ret = 0;
    auto caps = test::read_caps(t, &ret);

    constexpr int kBlobs = 2000;
    std::vector<uint32_t> handles(kBlobs);
    std::vector<ccmd::Encoded> gems;
    for (int i = 0; i < kBlobs; ++i)
        gems.push_back(ccmd::gem_new(caps.u.msm.va_start + uint64_t(i) * 4096, 4096, wire::MSM_BO_WC, i + 1));
    std::vector<double> creates;
    auto t0 = Clock::now();
    const auto all0 = t0;
    for (int i = 0; i < kBlobs; ++i) {
        BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, uint64_t(i + 1),
                         gems[i].bytes};
        t0 = Clock::now();
        REQUIRE(t.create_blob(b, &handles[i]) == 0);
        creates.push_back(us_since(t0));
    }
    const double create_us = us_since(all0);
    std::sort(creates.begin(), creates.end());
    t0 = Clock::now();
    for (uint32_t h : handles) {
        uint32_t res;
        REQUIRE(t.resource_id(h, &res) == 0);
    }
    const double resolve_us = us_since(t0);

    constexpr int kTrips = 1000;
    std::vector<double> trips;
    const auto nop = test::nop_with_seqno(1);
    for (int i = 0; i < kTrips; ++i) {
        t0 = Clock::now();
        TransportFence f;
        REQUIRE(t.execbuf({nop, 1, true, -1}, &f) == 0);
        REQUIRE(t.wait_fence(f, 5'000'000'000) == 0);
        trips.push_back(us_since(t0));
    }
    std::sort(trips.begin(), trips.end());
    std::printf("%-8s create_blob with tunnelled GEM_NEW: call p50 %.1f us, p99 %.1f us, %d creates in %.0f us "
                "(host-bound); then %d resource_id: %.2f us/id; fenced NOP round trip: p50 %.1f us, p99 %.1f us\n",
                name, creates[kBlobs / 2], creates[kBlobs * 99 / 100], kBlobs, create_us, kBlobs,
                resolve_us / kBlobs, trips[kTrips / 2], trips[kTrips * 99 / 100]);
}

} // namespace

TEST_CASE("perf: vtest transport against fdnc-hostsim", "[.perf]") {
    test::HostsimProcess hs;
    REQUIRE(hs.ok());
    VtestOptions o;
    o.socket_path = hs.socket_path();
    std::string err;
    auto t = VtestTransport::connect(o, &err);
    REQUIRE(t);
    measure("vtest", *t);
}

TEST_CASE("perf: virtgpu transport over the ioctl fake", "[.perf]") {
    host::MsmRenderer host;
    auto fake = std::make_shared<test::FakeVirtgpu>(host);
    std::string err;
    auto t = VirtgpuTransport::open({"", fake}, &err);
    REQUIRE(t);
    measure("virtgpu", *t);
}
