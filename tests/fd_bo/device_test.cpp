#include <cerrno>
#include <set>
#include <thread>
#include <vector>

#include "fd_bo_fixture.h"
#include "virtio_proto/ccmd_encoder.h"

using namespace fdnc;
using namespace fdnc::test;

TEST_CASE("a device over the in-process host reports the host's VA range", "[fd_bo]") {
    auto dev = open_test_device("inproc:va_size=1G");
    CHECK(dev->va_range_start() == 0x100000000ull);
    CHECK(dev->va_range_size() == (1ull << 30));
    CHECK(dev->caps().context_type == wire::VIRTGPU_DRM_CONTEXT_MSM);
    CHECK(dev->status() == 0);
}

TEST_CASE("bo_new hands out page-aligned, in-range, non-overlapping iovas", "[fd_bo]") {
    DeviceOptions opts;
    opts.bo_cache = false;
    opts.suballoc = false;
    auto dev = open_test_device("inproc", opts);
    std::vector<BoRef> bos;
    std::set<std::pair<uint64_t, uint64_t>> ranges;
    for (uint64_t i = 1; i <= 200; i++) {
        bos.push_back(new_bo(*dev, i * 3000));
        Bo& b = *bos.back();
        CHECK(b.iova() % 4096 == 0);
        CHECK(b.iova() >= dev->va_range_start());
        CHECK(b.iova() + b.size() <= dev->va_range_start() + dev->va_range_size());
        ranges.insert({b.iova(), b.iova() + ((b.size() + 4095) & ~4095ull)});
    }
    uint64_t prev_end = 0;
    for (auto [s, e] : ranges) {
        CHECK(s >= prev_end);
        prev_end = e;
    }
}

TEST_CASE("10k bo_new at 200 us round trip never wait on the host", "[fd_bo]") {
    auto dev = open_test_device("inproc:rtt_us=200");
    const uint64_t waits_before = dev->stats().host_waits;
    std::vector<BoRef> bos;
    for (int i = 0; i < 10000; i++) bos.push_back(new_bo(*dev, 4096u << (i % 6)));
    DeviceStats s = dev->stats();
    CHECK(s.host_waits == waits_before);
    CHECK(s.host_waits_by_reason[static_cast<size_t>(HostWait::HostIova)] == 0);
    CHECK(s.bos_live == 10000);
    bos.clear();
    CHECK(dev->stats().bos_live == 0);
}

TEST_CASE("a bo cache hit reuses the host object and iova and sends nothing", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    auto dev = open_test_device("inproc", opts);
    uint64_t iova;
    {
        BoRef a = new_bo(*dev, 100000);
        iova = a->iova();
    }
    dev->requests().flush();
    const DeviceStats before = dev->stats();
    BoRef b = new_bo(*dev, 100000);
    const DeviceStats after = dev->stats();
    CHECK(b->iova() == iova);
    CHECK(after.ccmds == before.ccmds);
    CHECK(after.bo_cache_hits == before.bo_cache_hits + 1);
}

TEST_CASE("small bos are suballocated from a shared block without host traffic", "[fd_bo]") {
    auto dev = open_test_device("inproc");
    BoRef first = new_bo(*dev, 256);
    dev->requests().flush();
    const uint64_t ccmds = dev->stats().ccmds;
    std::vector<BoRef> subs;
    for (int i = 0; i < 100; i++) subs.push_back(new_bo(*dev, 256));
    CHECK(dev->stats().ccmds == ccmds);
    CHECK(dev->stats().suballocs >= 101);
    // All inside first's 4 MiB block, 256-byte slots, no two alike.
    std::set<uint64_t> iovas{first->iova()};
    for (auto& s : subs) {
        CHECK(s->backing() == first->backing());
        CHECK(s->iova() - s->backing()->iova() == s->backing_offset());
        iovas.insert(s->iova());
    }
    CHECK(iovas.size() == 101);
}

TEST_CASE("a bo freed while its submit runs keeps its iova until retire, and the GPU never faults", "[fd_bo]") {
    DeviceOptions opts;
    opts.bo_cache = false;
    opts.suballoc = false;
    // 64 KiB of address space at 200 ms per submit: reuse pressure is immediate.
    auto dev = open_test_device("inproc:gpu_us=200000,va_size=64K", opts);
    int err = 0;
    Pipe* pipe = dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*dev, 4096);
    Bo* victim = dev->bo_new(8192, 0, "victim", &err);
    REQUIRE(victim);
    const uint64_t victim_iova = victim->iova();
    const uint32_t fence = submit_with(*pipe, *cmd, {victim});
    victim->unref(); // freed while the GPU still uses it
    // Everything else still fits; none of it may land on the victim's range while it runs.
    std::vector<BoRef> others;
    for (int i = 0; i < 13; i++) {
        Bo* b = dev->bo_new(4096, 0, nullptr, &err);
        if (!b) break;
        CHECK((b->iova() + 4096 <= victim_iova || b->iova() >= victim_iova + 8192));
        others.emplace_back(b);
    }
    CHECK_FALSE(pipe->is_retired(fence));
    CHECK(dev->stats().va_quarantined_bytes == 8192);
    REQUIRE(pipe->wait(fence, 5'000'000'000) == 0);
    dev->retire();
    CHECK(dev->stats().va_quarantined_bytes == 0);
    // Now the range is free again and is handed out.
    BoRef again = new_bo(*dev, 8192);
    CHECK(again->iova() == victim_iova);
    Submit s(pipe);
    REQUIRE(s.add_cmd(cmd.get(), 0, 64) == 0);
    REQUIRE(s.add_bo(again.get(), wire::MSM_SUBMIT_BO_WRITE) >= 0);
    uint32_t f2 = 0;
    REQUIRE(s.flush(&f2) == 0);
    REQUIRE(pipe->wait(f2, 5'000'000'000) == 0);
    CHECK(dev->stats().faults == 0);
    CHECK(dev->stats().async_errors == 0);
    others.clear();
    delete pipe;
}

TEST_CASE("an upload is visible through the mapping, syncing on its seqno first", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    auto dev = open_test_device("inproc:rtt_us=2000", opts);
    BoRef bo = new_bo(*dev, 8192);
    std::vector<uint8_t> data(6000);
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i * 7);
    REQUIRE(bo->upload(data.data(), 100, data.size()) == 0);
    int err = 0;
    auto* p = static_cast<uint8_t*>(bo->map(&err));
    REQUIRE(p);
    CHECK(std::equal(data.begin(), data.end(), p + 100));
    CHECK(dev->stats().host_waits_by_reason[static_cast<size_t>(HostWait::MapSync)] == 1);
}

TEST_CASE("CPU writes through a mapping survive a cache round trip of the same bo", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false; // the cache, not a heap block, must serve the second bo_new
    auto dev = open_test_device("inproc", opts);
    uint64_t iova = 0;
    {
        BoRef bo = new_bo(*dev, 300000);
        auto* p = static_cast<uint32_t*>(bo->map());
        REQUIRE(p);
        p[0] = 0xdeadbeef;
        p[300000 / 4 - 1] = 0x12345678;
        iova = bo->iova();
    } // freed: parked in the bo cache with its host object and mapping
    const uint64_t hits = dev->stats().bo_cache_hits;
    BoRef again = new_bo(*dev, 300000);
    CHECK(dev->stats().bo_cache_hits == hits + 1);
    CHECK(again->iova() == iova);
    auto* q = static_cast<uint32_t*>(again->map());
    REQUIRE(q);
    CHECK(q[0] == 0xdeadbeef);
    CHECK(q[300000 / 4 - 1] == 0x12345678);
}

TEST_CASE("cpu_prep waits for the submits that use the bo; NOSYNC reports -EBUSY instead", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    auto dev = open_test_device("inproc:gpu_us=100000", opts);
    int err = 0;
    Pipe* pipe = dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*dev, 4096);
    BoRef target = new_bo(*dev, 4096);
    const uint32_t fence = submit_with(*pipe, *cmd, {target.get()});
    CHECK(target->cpu_prep(pipe, wire::MSM_PREP_WRITE | wire::MSM_PREP_NOSYNC) == -EBUSY);
    CHECK(target->cpu_prep(pipe, wire::MSM_PREP_WRITE) == 0);
    CHECK(pipe->is_retired(fence));
    CHECK(dev->stats().host_waits_by_reason[static_cast<size_t>(HostWait::CpuPrep)] >= 1);
    CHECK(target->cpu_prep(pipe, wire::MSM_PREP_READ | wire::MSM_PREP_NOSYNC) == 0);
    delete pipe;
}

TEST_CASE("waiting on a fence that was never submitted is -EINVAL", "[fd_bo]") {
    auto dev = open_test_device("inproc");
    int err = 0;
    Pipe* pipe = dev->pipe_new(0, &err);
    REQUIRE(pipe);
    CHECK(pipe->wait(1, 0) == -EINVAL);
    BoRef cmd = new_bo(*dev, 4096);
    const uint32_t f = submit_with(*pipe, *cmd);
    CHECK(pipe->wait(f + 1, 0) == -EINVAL);
    CHECK(pipe->wait(f, 5'000'000'000) == 0);
    delete pipe;
}

TEST_CASE("pipe seqnos are consecutive and start at 1", "[fd_bo]") {
    auto dev = open_test_device("inproc");
    int err = 0;
    Pipe* pipe = dev->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*dev, 4096);
    CHECK(submit_with(*pipe, *cmd) == 1);
    CHECK(submit_with(*pipe, *cmd) == 2);
    CHECK(submit_with(*pipe, *cmd) == 3);
    delete pipe;
}

TEST_CASE("an async error from the host marks the context lost and allocations fail", "[fd_bo]") {
    auto dev = open_test_device("inproc");
    CHECK(dev->status() == 0);
    // A SET_IOVA on a res_id the host never saw: the real host counts an async error (E2).
    auto req = ccmd::gem_set_iova(0x7fff0000, 0x100000000ull);
    REQUIRE(dev->requests().enqueue(req.span()) != 0);
    auto nop = ccmd::nop();
    const uint32_t seqno = dev->requests().enqueue(nop.span());
    REQUIRE(dev->requests().wait_seqno(seqno, 5'000'000'000) == 0);
    CHECK(dev->status() == -EIO);
    CHECK(dev->stats().context_lost);
    CHECK(dev->stats().async_errors == 1);
    int err = 0;
    CHECK(dev->bo_new(4096, 0, nullptr, &err) == nullptr);
    CHECK(err == -ENOMEM);
    CHECK(dev->pipe_new(0, &err) == nullptr);
    CHECK(err == -EIO);
}

TEST_CASE("a host out of memory makes the following allocations fail with -ENOMEM", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    opts.bo_cache = false;
    auto dev = open_test_device("inproc:oom_after=3", opts);
    std::vector<BoRef> ok;
    for (int i = 0; i < 3; i++) ok.push_back(new_bo(*dev, 4096));
    int err = 0;
    Bo* doomed = dev->bo_new(4096, 0, nullptr, &err); // returns at once; the host fails it later
    REQUIRE(doomed);
    auto nop = ccmd::nop();
    const uint32_t seqno = dev->requests().enqueue(nop.span());
    dev->requests().wait_seqno(seqno, 200'000'000); // the GEM_NEW failure aborted its stream (H6)
    // Either way, the host has reported the failure by now: the context is gone.
    CHECK(dev->status() == -EIO);
    CHECK(dev->bo_new(4096, 0, nullptr, &err) == nullptr);
    CHECK(err == -ENOMEM);
    doomed->unref();
}

TEST_CASE("the address space running out is -ENOMEM, after trimming the cache", "[fd_bo]") {
    DeviceOptions opts;
    opts.suballoc = false;
    auto dev = open_test_device("inproc:va_size=1M", opts);
    {
        std::vector<BoRef> fill;
        for (int i = 0; i < 16; i++) fill.push_back(new_bo(*dev, 65536)); // the whole 1 MiB
        int err = 0;
        CHECK(dev->bo_new(4096, 0, nullptr, &err) == nullptr);
        CHECK(err == -ENOMEM);
    } // all 16 go to the cache, holding every byte of the range
    BoRef big = new_bo(*dev, 512 * 1024); // only fits once the cache gave its ranges back
    CHECK(big->iova() >= dev->va_range_start());
    CHECK(dev->stats().faults == 0);
}

TEST_CASE("the host-iova baseline waits one round trip per new buffer", "[fd_bo]") {
    DeviceOptions opts;
    opts.iova_mode = IovaMode::Host;
    opts.bo_cache = false;
    auto dev = open_test_device("inproc:rtt_us=100", opts);
    std::vector<BoRef> bos;
    for (int i = 0; i < 20; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        bos.push_back(new_bo(*dev, 4096 * (i + 1)));
        // A lower bound only: the host's answer cannot arrive before the injected round trip.
        CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::microseconds(100));
    }
    const DeviceStats s = dev->stats();
    // Counted when the call blocked (measured): at most one per bo_new, and the same in bo_new_waits.
    CHECK(s.host_waits_by_reason[static_cast<size_t>(HostWait::HostIova)] <= 20);
    CHECK(s.host_waits_by_reason[static_cast<size_t>(HostWait::HostIova)] >= 1);
    CHECK(s.bo_new_waits == s.host_waits_by_reason[static_cast<size_t>(HostWait::HostIova)]);
    std::set<uint64_t> iovas;
    for (auto& b : bos) {
        CHECK(b->iova() >= dev->va_range_start());
        CHECK(b->iova() < dev->va_range_start() + dev->va_range_size());
        iovas.insert(b->iova());
    }
    CHECK(iovas.size() == 20);
}

TEST_CASE("8 threads allocating, submitting and freeing leave an empty heap", "[fd_bo]") {
    auto dev = open_test_device("inproc:gpu_us=50,va_size=256M");
    // Catch's assertions are not thread-safe: threads count failures, the test checks after join.
    std::atomic<int> failures{0};
    {
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; t++) {
            threads.emplace_back([&, t] {
                int err = 0;
                Pipe* pipe = dev->pipe_new(t % 3, &err);
                if (!pipe) {
                    failures++;
                    return;
                }
                uint32_t rng = 1234567u * (t + 1);
                for (int i = 0; i < 200; i++) {
                    rng = rng * 1664525u + 1013904223u;
                    Bo* cmd = dev->bo_new(4096, 0, nullptr, &err);
                    Bo* data = dev->bo_new(4096u << (rng % 8), 0, nullptr, &err);
                    Bo* small = dev->bo_new(64u << (rng % 5), 0, nullptr, &err);
                    if (!cmd || !data || !small) {
                        failures++;
                    } else {
                        Submit s(pipe);
                        uint32_t fence = 0;
                        if (s.add_cmd(cmd, 0, 64) != 0 || s.add_bo(data, wire::MSM_SUBMIT_BO_WRITE) < 0 ||
                            s.add_bo(small, wire::MSM_SUBMIT_BO_READ) < 0 || s.flush(&fence) != 0)
                            failures++;
                    }
                    for (Bo* b : {cmd, data, small})
                        if (b) b->unref();
                }
                delete pipe;
            });
        }
        for (auto& th : threads) th.join();
    }
    CHECK(failures == 0);
    dev->trim_cache();
    dev->trim_heaps();
    dev->retire();
    const DeviceStats s = dev->stats();
    CHECK(s.faults == 0);
    CHECK(s.async_errors == 0);
    CHECK(s.bos_live == 0);
    CHECK(s.submits == 8 * 200);
    CHECK(s.va_quarantined_bytes == 0);
    CHECK(dev->heap_stats().live_ranges == 0);
    CHECK(dev->heap_stats().largest_free == dev->va_range_size());
    // Every range went through the heap's handle API (allocate/release, through the quarantine):
    // the heap never needed its iova -> block hash.
    CHECK_FALSE(dev->heap_stats().address_index);
}
