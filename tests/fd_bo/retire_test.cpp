// The retire rule at every level: suballocated slots, cached bos and whole ranges are reused only
// after the submits that used them retired; the host model checks no mapping ever overlaps.
#include <set>

#include "fd_bo_fixture.h"
#include "host_sim/msm_renderer.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {
InprocStack open_with_model(uint64_t gpu_us, DeviceOptions opts = {}) {
    InprocConfig ic;
    ic.gpu_us = gpu_us;
    return InprocStack(ic, opts);
}
} // namespace

TEST_CASE("a suballocated slot freed while its submit runs is not handed out again before retire", "[fd_bo]") {
    auto h = open_with_model(150000);
    int err = 0;
    Pipe* pipe = h.dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*h.dev, 4096, kBoNoCache);
    Bo* sub = h.dev->bo_new(1024, 0, nullptr, &err);
    REQUIRE(sub);
    REQUIRE(sub->backing() != sub);
    const uint64_t busy_iova = sub->iova();
    const uint32_t fence = submit_with(*pipe, *cmd, {sub});
    sub->unref();
    std::vector<BoRef> more;
    for (int i = 0; i < 64; i++) {
        more.push_back(new_bo(*h.dev, 1024));
        CHECK(more.back()->iova() != busy_iova);
    }
    REQUIRE(pipe->wait(fence, 5'000'000'000) == 0);
    more.clear();
    // After retire the slot comes back.
    std::set<uint64_t> seen;
    for (int i = 0; i < 70; i++) {
        more.push_back(new_bo(*h.dev, 1024));
        seen.insert(more.back()->iova());
    }
    CHECK(seen.count(busy_iova) == 1);
    CHECK(h.dev->stats().faults == 0);
    delete pipe;
}

TEST_CASE("a cached bo still used by the GPU is not reused until its submit retired", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    auto h = open_with_model(150000, opts);
    int err = 0;
    Pipe* pipe = h.dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*h.dev, 4096, kBoNoCache);
    Bo* a = h.dev->bo_new(65536, 0, nullptr, &err);
    REQUIRE(a);
    const uint64_t a_iova = a->iova();
    const uint32_t fence = submit_with(*pipe, *cmd, {a});
    a->unref(); // into the cache, busy
    BoRef b = new_bo(*h.dev, 65536);
    CHECK(b->iova() != a_iova); // a miss: a fresh bo, the busy one stays parked
    REQUIRE(pipe->wait(fence, 5'000'000'000) == 0);
    BoRef c = new_bo(*h.dev, 65536);
    CHECK(c->iova() == a_iova); // idle now: a hit
    delete pipe;
}

TEST_CASE("the host never sees two live mappings overlap while ranges churn under submits", "[fd_bo]") {
    DeviceOptions opts;
    opts.bo_cache = false;
    host::HostSimConfig cfg;
    cfg.kernel.gpu_exec_us = 2000;
    cfg.kernel.va_size = 64u << 20; // 64 MiB: constant reuse of ranges up to 2 MiB
    auto host = make_msm_host(cfg);
    auto* model = static_cast<host::MsmRenderer*>(host.get());
    auto t = make_inproc(*host);
    const uint32_t ctx = t->ctx_id();
    std::string err;
    auto dev = Device::open(std::move(t), opts, &err);
    REQUIRE(dev);
    int e = 0;
    Pipe* pipe = dev->pipe_new(0, &e);
    REQUIRE(pipe);
    uint32_t rng = 99;
    std::vector<BoRef> live;
    for (int i = 0; i < 400; i++) {
        rng = rng * 1664525u + 1013904223u;
        BoRef cmd = new_bo(*dev, 4096);
        BoRef data = new_bo(*dev, 4096u << (rng % 10));
        submit_with(*pipe, *cmd, {data.get()});
        if (rng & 1) live.push_back(std::move(data));
        if (live.size() > 8) live.erase(live.begin());
        if (i % 50 == 0) {
            dev->requests().flush();
            CHECK_FALSE(model->mappings_overlap(ctx));
        }
    }
    REQUIRE(pipe->wait(pipe->last_submitted(), 10'000'000'000) == 0);
    CHECK_FALSE(model->mappings_overlap(ctx));
    CHECK(dev->stats().faults == 0);
    CHECK(model->global_faults() == 0);
    CHECK(dev->stats().async_errors == 0);
    delete pipe;
}
