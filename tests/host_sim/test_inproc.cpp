// MsmRenderer behind InprocTransport + RequestBuffer, on the real-time GPU clock.
#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "host_sim/inproc_host.h"
#include "host_sim/msm_renderer.h"
#include "virtio_proto/ccmd_encoder.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/request_buffer.h"
#include "virtio_proto/transport.h"
#include "virtio_proto/virtgpu_uapi.h"

using namespace fdnc;
using namespace fdnc::wire;

namespace {

struct Stack {
    explicit Stack(InprocConfig cfg = {}) : t(host::make_inproc_msm_host(cfg)) {
        REQUIRE(t.get_capset(VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&caps), sizeof caps}) == 160);
        REQUIRE(t.context_init(VIRTGPU_CAPSET_DRM, caps.u.msm.priorities + 1) == 0);
        BlobCreateArgs a;
        a.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
        a.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
        a.size = kShmemSize;
        REQUIRE(t.create_blob(a, &shm_handle) == 0);
        REQUIRE(t.map_blob(shm_handle, kShmemSize, &shm) == 0);
        rb = std::make_unique<RequestBuffer>(t, shm, kShmemSize);
    }
    uint32_t bo(uint64_t iova, uint64_t size, uint32_t blob_id) {
        auto req = ccmd::gem_new(iova, size, MSM_BO_WC, blob_id);
        BlobCreateArgs a;
        a.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
        a.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
        a.size = size;
        a.blob_id = blob_id;
        uint32_t h = 0;
        REQUIRE(rb->create_blob(a, req.span(), &h) == 0);
        uint32_t res = 0;
        REQUIRE(t.resource_id(h, &res) == 0);
        return res;
    }
    uint32_t queue(uint32_t prio) {
        auto req = ccmd::submitqueue_new(0, prio);
        std::vector<uint8_t> rsp(ccmd::kSubmitqueueNewRspSize);
        REQUIRE(rb->send_sync(req.span(), rsp, 5'000'000'000) == 0);
        int32_t ret = -1;
        uint32_t id = 0;
        REQUIRE(ccmd::parse_submitqueue_new(rsp, &ret, &id));
        REQUIRE(ret == 0);
        return id;
    }
    const msm_shmem* page() const { return static_cast<const msm_shmem*>(shm); }

    virgl_renderer_capset_drm caps{};
    InprocTransport t;
    uint32_t shm_handle = 0;
    void* shm = nullptr;
    std::unique_ptr<RequestBuffer> rb;
};

} // namespace

TEST_CASE("Through InprocTransport a submit's ring fence signals after the GPU time and nothing faults") {
    InprocConfig cfg;
    cfg.gpu_us = 300;
    Stack s(cfg);
    uint32_t q = s.queue(1);
    uint32_t a = s.bo(0x1'0000'0000ull, 0x10000, 1);
    drm_msm_gem_submit_bo bo{MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE, a, 0x1'0000'0000ull};
    drm_msm_gem_submit_cmd cmd{MSM_SUBMIT_CMD_BUF, 0, 0, 256, 0, 0, 0};
    auto sub = ccmd::gem_submit(MSM_PIPE_3D0, q, 1, {&bo, 1}, {&cmd, 1});
    TransportFence f;
    REQUIRE(s.rb->submit(sub.span(), 2, &f) == 0);
    REQUIRE(s.t.wait_fence(f, 5'000'000'000) == 0);
    auto clear = ccmd::gem_set_iova(a, 0);
    REQUIRE(s.rb->enqueue(clear.span()) != 0);
    uint32_t b = s.bo(0x1'0000'0000ull, 0x10000, 2); // reuses the range after retire
    REQUIRE(b != 0);
    auto nop = ccmd::nop();
    std::vector<uint8_t> none;
    REQUIRE(s.rb->send_sync(nop.span(), none, 5'000'000'000) == 0);
    CHECK(s.page()->async_error == 0);
    CHECK(s.page()->global_faults == 0);
}

TEST_CASE("inproc oom_after makes later GEM_NEWs fail with an async error") {
    InprocConfig cfg;
    cfg.oom_after = 1;
    Stack s(cfg);
    s.bo(0x1'0000'0000ull, 4096, 1);
    auto req = ccmd::gem_new(0x1'0001'0000ull, 4096, MSM_BO_WC, 2);
    BlobCreateArgs a;
    a.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
    a.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    a.size = 4096;
    a.blob_id = 2;
    uint32_t h = 0;
    REQUIRE(s.rb->create_blob(a, req.span(), &h) == 0); // never waits: the failure is async
    auto nop = ccmd::nop();
    std::vector<uint8_t> none;
    REQUIRE(s.rb->send_sync(nop.span(), none, 5'000'000'000) == 0);
    CHECK(s.page()->async_error == 1);
}

// The delay line (issue 16): each item is processed rtt/2 after it was sent and its answer is
// visible rtt/2 after that, measured per item; back-to-back items are not serialized by the delay.
// Time is asserted as a lower bound per item; the one upper bound is ten times the expected ~rtt
// and exists to fail a host that delays items one after another ((N+1) * rtt/2 at least).
TEST_CASE("the delay line keeps back-to-back items back to back and each answer a full rtt after its send") {
    using Clock = std::chrono::steady_clock;
    InprocConfig cfg;
    cfg.rtt_us = 20000;
    Stack s(cfg);
    constexpr int kItems = 20;
    std::vector<Clock::time_point> sent;
    std::vector<TransportFence> fences(kItems);
    const auto t0 = Clock::now();
    for (int i = 0; i < kItems; ++i) {
        ExecbufArgs a;
        a.ring_idx = 0; // the host CPU timeline: retired as the host runs it
        a.fence_out = true;
        sent.push_back(Clock::now());
        REQUIRE(s.t.execbuf(a, &fences[i]) == 0);
    }
    for (int i = 0; i < kItems; ++i) {
        REQUIRE(s.t.wait_fence(fences[i], 10'000'000'000) == 0);
        CHECK(Clock::now() - sent[i] >= std::chrono::microseconds(cfg.rtt_us)); // lower bound, each
    }
    const auto all = Clock::now() - t0;
    INFO("20 back-to-back items answered after " << (std::chrono::duration<double, std::milli>(all).count()) << " ms");
    CHECK(all >= std::chrono::microseconds(cfg.rtt_us));
    CHECK(all < std::chrono::microseconds(uint64_t{cfg.rtt_us} / 2 * kItems)); // a serializing line: >= 210 ms
}

TEST_CASE("a round trip over the delay line takes at least the injected rtt, call after call") {
    using Clock = std::chrono::steady_clock;
    InprocConfig cfg;
    cfg.rtt_us = 20000;
    Stack s(cfg);
    for (int i = 0; i < 5; ++i) {
        const auto t0 = Clock::now();
        s.queue(1); // a send_sync: the answer is read from the shared page
        CHECK(Clock::now() - t0 >= std::chrono::microseconds(cfg.rtt_us));
    }
}

namespace {

// The guest half reduced to a recorder: when each fence point's answer becomes visible.
struct RetireRecorder final : InprocGuest {
    void on_retire(uint32_t, uint64_t point, InprocClock::time_point visible_at) override {
        std::lock_guard g(mu);
        visible[point] = visible_at;
        cv.notify_all();
    }
    void on_host_gone() override {}
    bool wait_for(uint64_t point) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, std::chrono::seconds(10), [&] { return visible.count(point) != 0; });
    }
    std::mutex mu;
    std::condition_variable cv;
    std::map<uint64_t, InprocClock::time_point> visible;
};

// Posts an empty execbuf on ring 0 (retired as the host runs it) with fence `point`.
void post_point(InprocHostLink& link, uint64_t point) {
    InprocItem it;
    it.kind = InprocItem::Kind::Execbuf;
    it.ring = 0;
    it.point = point;
    REQUIRE(link.post(std::move(it)) == 0);
}

std::unique_ptr<InprocHostLink> line_with_context(uint32_t rtt_us, RetireRecorder& rec) {
    InprocConfig cfg;
    cfg.rtt_us = rtt_us;
    auto link = host::make_inproc_msm_host(cfg);
    link->attach(&rec);
    const uint32_t ctx = link->ctx_id();
    REQUIRE(link->call([&](Host& h) { return h.context_create(ctx, VIRTGPU_CAPSET_DRM, 1); }) == 0);
    return link;
}

} // namespace

// The delay line's own clock (issue 16): an answer is visible rtt after its request was sent plus
// the host's work on it, never plus the host thread's wake-up lateness. Each request is sent to an
// idle host (the previous answer already seen), so the host thread must wake for every one; a
// line that stamps answers on the wall clock when the host got round to them is late by that
// wake-up every time (measured here: median ~90 us with the default timer slack, ~6 us without).
// The check uses the link's own stamps, so it holds on a loaded machine; the median keeps one
// preemption inside the host's work from failing it, and the bound follows what an item costs
// this machine (one item's work, calibrated back to back at rtt 0), so a slow CPU (QEMU TCG, sanitizers) does not
// fail it either.
TEST_CASE("the delay line stamps each answer exactly rtt after its send, whatever the host thread's wake-up") {
    using us = std::chrono::duration<double, std::micro>;
    double item_cost_us;
    {
        RetireRecorder rec;
        auto link = line_with_context(0, rec);
        constexpr int kBurst = 200;
        // The first item waits for an in-fence, so the rest queue behind it and then run back to
        // back (each starts when the one before it ended).
        const int gate = ::eventfd(0, EFD_CLOEXEC);
        REQUIRE(gate >= 0);
        InprocItem first;
        first.kind = InprocItem::Kind::Execbuf;
        first.in_fence_fd = ::dup(gate); // owned by the item
        first.point = 1;
        REQUIRE(link->post(std::move(first)) == 0);
        for (uint64_t point = 2; point <= kBurst; ++point) post_point(*link, point);
        const uint64_t one = 1;
        REQUIRE(::write(gate, &one, sizeof one) == sizeof one);
        REQUIRE(rec.wait_for(kBurst));
        ::close(gate);
        link->shutdown(true);
        // Queued items run one after another: the median gap between answers is one item's work.
        std::vector<double> gaps;
        for (uint64_t point = 3; point <= kBurst; ++point)
            gaps.push_back(us(rec.visible[point] - rec.visible[point - 1]).count());
        std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
        item_cost_us = gaps[gaps.size() / 2];
    }
    constexpr uint32_t kRttUs = 2000;
    RetireRecorder rec;
    auto link = line_with_context(kRttUs, rec);
    constexpr int kItems = 40;
    std::vector<double> late_us;
    for (uint64_t point = 1; point <= kItems; ++point) {
        const auto sent = InprocClock::now(); // the link stamps the send after this
        post_point(*link, point);
        REQUIRE(rec.wait_for(point));
        std::lock_guard g(rec.mu);
        late_us.push_back(us(rec.visible[point] - sent - std::chrono::microseconds(kRttUs)).count());
    }
    link->shutdown(true);
    std::sort(late_us.begin(), late_us.end());
    // An isolated item costs ~10 queued ones here (cold caches, the retire path): 40x leaves room.
    const double bound = std::max(20.0, 40 * item_cost_us);
    INFO("answer visible minus (send + rtt), us: min " << late_us.front() << ", median " << late_us[kItems / 2]
                                                      << ", max " << late_us.back() << "; one item back to back "
                                                      << item_cost_us << " us, bound " << bound << " us");
    CHECK(late_us.front() >= 0.0);      // never early
    CHECK(late_us[kItems / 2] < bound); // the host's work on an empty execbuf, not a wake-up
}

// Notification suppression (issue 17): a post wakes the host thread only when it sleeps with
// nothing to do. Counted by the link on the posting thread (note_host_wake), after the wake.
TEST_CASE("a post wakes the host thread only when it sleeps idle, and never while it polls") {
    RetireRecorder rec;
    InprocConfig cfg;
    cfg.rtt_us = 20000; // a queued item waits 10 ms for its deadline: the host is busy, not idle
    cfg.poll_us = 0;
    auto link = host::make_inproc_msm_host(cfg);
    link->attach(&rec);
    const uint32_t ctx = link->ctx_id();
    REQUIRE(link->call([&](Host& h) { return h.context_create(ctx, VIRTGPU_CAPSET_DRM, 1); }) == 0);
    auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }; // host asleep
    settle();
    const uint64_t w0 = host_wakes_on_this_thread();
    post_point(*link, 1); // idle host: woken
    post_point(*link, 2); // it now waits for item 1's deadline, which comes first: not woken
    CHECK(host_wakes_on_this_thread() - w0 == 1);
    REQUIRE(rec.wait_for(2));
    settle();
    post_point(*link, 3); // idle again: woken
    CHECK(host_wakes_on_this_thread() - w0 == 2);
    REQUIRE(rec.wait_for(3));
    link->shutdown(true);

    // A host thread that polls after its last item is reached without a wake.
    RetireRecorder polled;
    cfg.poll_us = 2'000'000;
    auto busy = host::make_inproc_msm_host(cfg);
    busy->attach(&polled);
    const uint32_t ctx2 = busy->ctx_id();
    REQUIRE(busy->call([&](Host& h) { return h.context_create(ctx2, VIRTGPU_CAPSET_DRM, 1); }) == 0);
    settle();
    const uint64_t w1 = host_wakes_on_this_thread();
    post_point(*busy, 1);
    CHECK(host_wakes_on_this_thread() == w1);
    REQUIRE(polled.wait_for(1));
    busy->shutdown(true);
}

// Memory stays on the thread that allocated it: a spent item's cmd buffer comes back to the client
// through post()'s spare instead of being freed on the host thread (util/ring_queue.h has why).
TEST_CASE("post() hands a spent item's cmd buffer back to the client for its next item") {
    RetireRecorder rec;
    auto link = line_with_context(0, rec);
    std::vector<uint8_t> spare;
    std::vector<const uint8_t*> buffers;
    for (uint64_t point = 1; point <= 3; ++point) {
        InprocItem it;
        it.kind = InprocItem::Kind::Execbuf;
        it.ring = 0;
        it.point = point;
        it.cmd = std::move(spare);
        // An all-zero ccmd stream is refused by the host (an error it counts), which is fine:
        // the item still runs and its buffer is spent.
        it.cmd.assign(64, 0);
        buffers.push_back(it.cmd.data());
        REQUIRE(link->post(std::move(it), &spare) == 0);
        REQUIRE(rec.wait_for(point));
        // A round trip runs after the item's clean-up (the host runs one thing at a time), so the
        // spent buffer is back on the link before the next post.
        REQUIRE(link->call([](Host&) { return 0; }) == 0);
    }
    // Post 1 found nothing spent; post 2 got item 1's buffer back, which item 3 then used.
    CHECK(buffers[2] == buffers[0]);
    CHECK(spare.empty());
    CHECK(spare.capacity() >= 64); // item 2's, from post 3
}
