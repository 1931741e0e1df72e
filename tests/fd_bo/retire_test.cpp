// The retire rule at every level: suballocated slots, cached bos and whole ranges are reused only
// after the submits that used them retired. Checked by oracles that do not rely on the host
// model's own rules (common/iova_shadow.h): a guest-side shadow of every iova handed out and the
// fence points of every freed range, and a replay of the host kernel's call log (the previous
// owner's SET_IOVA 0 or GEM_CLOSE reached the host before its range was mapped again). The host
// model's overlap check stays as a third, weaker one.
#include <map>
#include <mutex>
#include <set>

#include "common/iova_shadow.h"
#include "fd_bo_fixture.h"
#include "host_sim/msm_renderer.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {

// The oracles of one test: the shadow and the host kernel's call log.
struct Oracles {
    IovaShadow shadow;
    std::mutex mu;
    std::vector<std::string> kernel_log;
    std::map<const Bo*, uint64_t> ids; // live bo -> its shadow id

    void log_kernel(host::HostSimConfig& hc) {
        hc.kernel.call_log = [this](const std::string& l) {
            std::lock_guard g(mu);
            kernel_log.push_back(l);
        };
    }
    BoRef track(BoRef bo) {
        ids[bo.get()] = shadow.handed_out(bo->iova(), bo->size());
        return bo;
    }
    Bo* track(Bo* bo) {
        ids[bo] = shadow.handed_out(bo->iova(), bo->size());
        return bo;
    }
    uint32_t submit(Pipe& pipe, Bo& cmd, std::initializer_list<Bo*> extra = {}) {
        const uint32_t fence = submit_with(pipe, cmd, extra);
        shadow.used(ids.at(&cmd), &pipe, fence);
        for (Bo* b : extra) shadow.used(ids.at(b), &pipe, fence);
        return fence;
    }
    void release(Bo* bo) {
        shadow.freed(ids.at(bo));
        ids.erase(bo);
        bo->unref();
    }
    void release(BoRef& bo) { release(bo.release()); }
    // As submit, without aborting the test: 0 when the submit failed (the oracles still run).
    uint32_t try_submit(Pipe& pipe, Bo& cmd, Bo& data) {
        Submit s(&pipe);
        uint32_t fence = 0;
        if (s.add_cmd(&cmd, 0, 64) != 0 || s.add_bo(&data, wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE) < 0 ||
            s.flush(&fence) != 0)
            return 0;
        shadow.used(ids.at(&cmd), &pipe, fence);
        shadow.used(ids.at(&data), &pipe, fence);
        return fence;
    }
    void release_all(std::vector<BoRef>& bos) {
        for (BoRef& b : bos) release(b);
        bos.clear();
    }
    // After everything: no early handout in the guest, no unannounced reuse on the host.
    void check(Device& dev) {
        dev.requests().flush();
        INFO(shadow.first_violation());
        CHECK(shadow.violations() == 0);
        std::lock_guard g(mu);
        CHECK_FALSE(kernel_log.empty());
        CHECK(set_iova_without_clear(kernel_log) == "");
    }
};

InprocStack open_with_model(uint64_t gpu_us, Oracles& o, DeviceOptions opts = {}) {
    InprocConfig ic;
    ic.gpu_us = gpu_us;
    return InprocStack(ic, opts, nullptr, [&](host::HostSimConfig& hc) { o.log_kernel(hc); });
}

} // namespace

TEST_CASE("a suballocated slot freed while its submit runs is not handed out again before retire", "[fd_bo]") {
    Oracles o;
    auto h = open_with_model(150000, o);
    int err = 0;
    Pipe* pipe = h.dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = o.track(new_bo(*h.dev, 4096, kBoNoCache));
    Bo* sub = h.dev->bo_new(1024, 0, nullptr, &err);
    REQUIRE(sub);
    REQUIRE(sub->backing() != sub);
    o.track(sub);
    const uint64_t busy_iova = sub->iova();
    const uint32_t fence = o.submit(*pipe, *cmd, {sub});
    o.release(sub);
    std::vector<BoRef> more;
    for (int i = 0; i < 64; i++) {
        more.push_back(o.track(new_bo(*h.dev, 1024)));
        CHECK(more.back()->iova() != busy_iova);
    }
    REQUIRE(pipe->wait(fence, 5'000'000'000) == 0);
    o.release_all(more);
    // After retire the slot comes back.
    std::set<uint64_t> seen;
    for (int i = 0; i < 70; i++) {
        more.push_back(o.track(new_bo(*h.dev, 1024)));
        seen.insert(more.back()->iova());
    }
    CHECK(seen.count(busy_iova) == 1);
    CHECK(h.dev->stats().faults == 0);
    o.release_all(more);
    o.release(cmd);
    o.check(*h.dev);
    o.shadow.forget_pipe(pipe);
    delete pipe;
}

TEST_CASE("a cached bo still used by the GPU is not reused until its submit retired", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    Oracles o;
    auto h = open_with_model(150000, o, opts);
    int err = 0;
    Pipe* pipe = h.dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = o.track(new_bo(*h.dev, 4096, kBoNoCache));
    Bo* a = h.dev->bo_new(65536, 0, nullptr, &err);
    REQUIRE(a);
    o.track(a);
    const uint64_t a_iova = a->iova();
    const uint32_t fence = o.submit(*pipe, *cmd, {a});
    o.release(a); // into the cache, busy
    BoRef b = o.track(new_bo(*h.dev, 65536));
    CHECK(b->iova() != a_iova); // a miss: a fresh bo, the busy one stays parked
    REQUIRE(pipe->wait(fence, 5'000'000'000) == 0);
    BoRef c = o.track(new_bo(*h.dev, 65536));
    CHECK(c->iova() == a_iova); // idle now: a hit
    o.release(b);
    o.release(c);
    o.release(cmd);
    o.check(*h.dev);
    o.shadow.forget_pipe(pipe);
    delete pipe;
}

TEST_CASE("the host never sees two live mappings overlap while ranges churn under submits", "[fd_bo]") {
    DeviceOptions opts;
    opts.bo_cache = false;
    Oracles o;
    host::HostSimConfig cfg;
    cfg.kernel.gpu_exec_us = 2000;
    cfg.kernel.va_size = 64u << 20; // 64 MiB: constant reuse of ranges up to 2 MiB
    // Classic kernels refuse to clear a pinned range (an early reuse shows as a lost device); from
    // 6.6 the clear succeeds and only a GPU fault or the oracles can tell.
    cfg.kernel.era = GENERATE(host::KernelEra::Classic, host::KernelEra::NoVmaTracking);
    o.log_kernel(cfg);
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
    int failed_at = -1; // the loop stops at a failed call so that the oracles below still judge
    for (int i = 0; i < 400 && failed_at < 0; i++) {
        rng = rng * 1664525u + 1013904223u;
        Bo* c = dev->bo_new(4096, 0, nullptr, &e);
        Bo* d = c ? dev->bo_new(4096u << (rng % 10), 0, nullptr, &e) : nullptr;
        if (!d) {
            if (c) c->unref();
            failed_at = i;
            break;
        }
        BoRef cmd = o.track(BoRef(c));
        BoRef data = o.track(BoRef(d));
        if (o.try_submit(*pipe, *cmd, *data) == 0) failed_at = i;
        o.release(cmd);
        if (rng & 1) live.push_back(std::move(data));
        else o.release(data);
        if (live.size() > 8) {
            o.release(live.front());
            live.erase(live.begin());
        }
        if (i % 50 == 0) {
            dev->requests().flush();
            CHECK_FALSE(model->mappings_overlap(ctx));
        }
    }
    o.release_all(live);
    o.check(*dev);
    CHECK(failed_at == -1);
    REQUIRE(pipe->wait(pipe->last_submitted(), 10'000'000'000) == 0);
    CHECK_FALSE(model->mappings_overlap(ctx));
    CHECK(dev->stats().faults == 0);
    CHECK(model->global_faults() == 0);
    CHECK(dev->stats().async_errors == 0);
    o.shadow.forget_pipe(pipe);
    delete pipe;
}

TEST_CASE("the kernel-log oracle finds a range mapped again before the host heard of its release", "[fd_bo]") {
    // The oracle of the tests above, on logs written by hand: it must be able to fail.
    const std::vector<std::string> base = {
        "MSM_GEM_NEW\t0\tfile=1 size=0x10000 flags=0x0 handle=1",
        "MSM_GEM_INFO\t0\tfile=1 info=SET_IOVA handle=1 value=0x100000000 len=0",
        "MSM_GEM_NEW\t0\tfile=1 size=0x1000 flags=0x0 handle=2",
    };
    auto reuse = base;
    reuse.push_back("MSM_GEM_INFO\t0\tfile=1 info=SET_IOVA handle=2 value=0x100008000 len=0");
    CHECK(set_iova_without_clear(reuse) != "");
    auto cleared = base;
    cleared.push_back("MSM_GEM_INFO\t0\tfile=1 info=SET_IOVA handle=1 value=0x0 len=0");
    cleared.push_back("MSM_GEM_INFO\t0\tfile=1 info=SET_IOVA handle=2 value=0x100008000 len=0");
    CHECK(set_iova_without_clear(cleared) == "");
    auto closed = base;
    closed.push_back("GEM_CLOSE\t0\tfile=1 handle=1");
    closed.push_back("MSM_GEM_INFO\t0\tfile=1 info=SET_IOVA handle=2 value=0x100008000 len=0");
    CHECK(set_iova_without_clear(closed) == "");
}
