// InprocTransport + MiniHost end to end: round trips, latency as a lower bound on waiting calls,
// non-waiting calls checked by state, fences, teardown and sharing.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "proto_fixture.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/drm_capset.h"

using namespace fdnc;
using namespace fdnc::wire;
using fdnc::test::Channel;
using fdnc::test::MiniHost;
using fdnc::test::MiniHostOptions;

namespace {

constexpr int64_t kSecond = 1'000'000'000;

int get_param(RequestBuffer& rb, uint32_t param, uint64_t* value) {
    auto e = ccmd::get_param(param);
    std::vector<uint8_t> rsp(ccmd::kGetParamRspSize);
    if (int r = rb.send_sync(e.span(), rsp, 10 * kSecond); r != 0) return r;
    int32_t ret = 0;
    if (!ccmd::parse_get_param(rsp, &ret, value)) return -EPROTO;
    return ret;
}

BlobCreateArgs bo_args(uint64_t size, uint64_t blob_id, std::span<const uint8_t> cmd = {}) {
    BlobCreateArgs a;
    a.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
    a.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE | VIRTGPU_BLOB_FLAG_USE_SHAREABLE;
    a.size = size;
    a.blob_id = blob_id;
    a.cmd = cmd;
    return a;
}

} // namespace

TEST_CASE("GET_PARAM round-trips through send_sync, InprocTransport and MiniHost") {
    MiniHostOptions opt;
    opt.gpu_id = 660;
    opt.va_size = 0x4'0000'0000ull;
    auto ch = Channel::open({}, opt);
    REQUIRE(ch);
    uint64_t v = 0;
    REQUIRE(get_param(*ch->rb, MSM_PARAM_GPU_ID, &v) == 0);
    CHECK(v == 660);
    REQUIRE(get_param(*ch->rb, MSM_PARAM_VA_SIZE, &v) == 0);
    CHECK(v == 0x4'0000'0000ull);
    CHECK(get_param(*ch->rb, MSM_PARAM_SYSPROF, &v) == -1); // P4: the host's ret, errno lost
    CHECK(ch->host->executed(MSM_CCMD_IOCTL_SIMPLE) == 3);
}

TEST_CASE("the shared page is created with rsp_mem_offset 16 and seqno follows every ccmd") {
    auto ch = Channel::open();
    REQUIRE(ch);
    CHECK(ch->rb->rsp_mem_offset() == 16);
    CHECK(ch->rb->rsp_area_size() == kShmemSize - 16);
    auto a = ccmd::nop(), b = ccmd::nop();
    const uint32_t s1 = ch->rb->enqueue(a.span());
    const uint32_t s2 = ch->rb->enqueue(b.span());
    REQUIRE(ch->rb->wait_seqno(s2, 10 * kSecond) == 0);
    CHECK(seqno_reached(ch->rb->host_seqno(), s2));
    const auto seen = ch->host->seqnos(ch->transport->ctx_id());
    REQUIRE(seen.size() >= 2);
    CHECK(seen[seen.size() - 2] == s1);
    CHECK(seen.back() == s2);
    CHECK(ch->rb->async_error() == 0);
}

TEST_CASE("four threads doing send_sync concurrently each get their own answer") {
    auto ch = Channel::open();
    REQUIRE(ch);
    const uint32_t params[4] = {MSM_PARAM_GPU_ID, MSM_PARAM_CHIP_ID, MSM_PARAM_VA_START, MSM_PARAM_VA_SIZE};
    const MiniHostOptions o;
    const uint64_t expect[4] = {o.gpu_id, o.chip_id, o.va_start, o.va_size};
    std::atomic<int> wrong{0}, errors{0};
    std::vector<std::thread> th;
    for (int k = 0; k < 4; ++k)
        th.emplace_back([&, k] {
            for (int i = 0; i < 400; ++i) {
                if (i % 5 == 0) { // async traffic between the sync ones
                    auto n = ccmd::nop();
                    ch->rb->enqueue(n.span());
                }
                uint64_t v = 0;
                if (get_param(*ch->rb, params[k], &v) != 0) ++errors;
                else if (v != expect[k]) ++wrong;
            }
        });
    for (auto& t : th) t.join();
    CHECK(errors == 0);
    CHECK(wrong == 0);
    CHECK(ch->host->executed(MSM_CCMD_IOCTL_SIMPLE) == 1600);
}

TEST_CASE("injected round-trip latency is a lower bound on a waiting call") {
    InprocConfig cfg;
    cfg.rtt_us = 20000;
    auto ch = Channel::open(cfg);
    REQUIRE(ch);
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t v = 0;
    REQUIRE(get_param(*ch->rb, MSM_PARAM_GPU_ID, &v) == 0);
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    CHECK(elapsed >= std::chrono::microseconds(cfg.rtt_us));
    CHECK(ch->transport->stats().host_waits >= 1);
}

TEST_CASE("create_blob with a tunnelled GEM_NEW never waits even when the host is slow") {
    MiniHost host;
    InprocConfig cfg;
    cfg.rtt_us = 0;
    auto fast = test::make_inproc(host, cfg);
    REQUIRE(fast->context_init(VIRTGPU_CAPSET_DRM, 2) == 0);
    const uint64_t waits_before = fast->stats().host_waits;
    host.set_retire_fences(false);
    // Block the host thread behind an in-fence that never signals: everything after it is queued
    // but not executed, so a call that waited would never return.
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    ExecbufArgs blocker;
    blocker.ring_idx = 0;
    blocker.in_fence_fd = pipefd[0];
    REQUIRE(fast->execbuf(blocker, nullptr) == 0);
    auto g = ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 2);
    uint32_t h = 0;
    REQUIRE(fast->create_blob(bo_args(4096, 2, g.bytes), &h) == 0);
    CHECK(h != 0);
    uint32_t res_id = 0;
    bool waited = true;
    REQUIRE(fast->resource_id(h, &res_id, &waited) == 0);
    CHECK(res_id != 0);
    CHECK_FALSE(waited);
    CHECK(fast->stats().host_waits == waits_before);
    CHECK(host.blobs_created() == 0); // the host has not run it: nobody waited for it
    CHECK(fast->close_blob(h) == 0);  // also non-waiting
    fast->close();                    // stops the host thread (it polls the in-fence in slices)
    ::close(pipefd[0]);
    ::close(pipefd[1]);
}

TEST_CASE("a tunnelled GEM_NEW runs before its blob create, so the blob exists and maps") {
    auto ch = Channel::open();
    REQUIRE(ch);
    auto g = ccmd::gem_new(0x1'0000'0000ull, 8192, MSM_BO_WC, 7);
    uint32_t h = 0;
    REQUIRE(ch->rb->create_blob(bo_args(8192, 7), g.span(), &h) == 0);
    void* p = nullptr;
    REQUIRE(ch->transport->map_blob(h, 8192, &p) == 0);
    REQUIRE(p != nullptr);
    static_cast<uint8_t*>(p)[8191] = 0x5a;
    CHECK(ch->host->blobs_created() == 2); // shmem + this one
    CHECK(ch->host->executed(MSM_CCMD_GEM_NEW) == 1);
    CHECK(ch->rb->async_error() == 0);
}

TEST_CASE("a blob create whose GEM_NEW never came fails on the host, not in the guest") {
    auto ch = Channel::open();
    REQUIRE(ch);
    uint32_t h = 0;
    REQUIRE(ch->transport->create_blob(bo_args(4096, 99), &h) == 0); // no parked blob_id 99 (B8)
    void* p = nullptr;
    CHECK(ch->transport->map_blob(h, 4096, &p) == -ENOENT);
    CHECK(ch->transport->stats().host_errors >= 1);
}

TEST_CASE("fence points on each ring are numbered 1, 2, 3 by the transport") {
    auto ch = Channel::open();
    REQUIRE(ch);
    for (uint64_t want = 1; want <= 3; ++want) {
        TransportFence f;
        ExecbufArgs a;
        a.ring_idx = 1;
        a.fence_out = true;
        REQUIRE(ch->transport->execbuf(a, &f) == 0);
        CHECK(f.ring_idx == 1);
        CHECK(f.point == want);
        CHECK(ch->transport->wait_fence(f, 10 * kSecond) == 0);
    }
    TransportFence done{1, 3};
    CHECK(ch->transport->wait_fence(done, INT64_MAX) == 0); // a huge timeout must not overflow
    TransportFence other;
    ExecbufArgs b;
    b.ring_idx = 2;
    b.fence_out = true;
    REQUIRE(ch->transport->execbuf(b, &other) == 0);
    CHECK(other.point == 1);
}

TEST_CASE("waiting on a fence the host holds times out with ETIMEDOUT") {
    auto ch = Channel::open();
    REQUIRE(ch);
    ch->host->set_retire_fences(false);
    ExecbufArgs a;
    a.ring_idx = 1;
    a.fence_out = true;
    TransportFence f;
    REQUIRE(ch->transport->execbuf(a, &f) == 0);
    CHECK(ch->transport->wait_fence(f, 0) == -ETIMEDOUT);
    CHECK(ch->transport->wait_fence(f, 2'000'000) == -ETIMEDOUT);
    ch->host->release_fences();
    CHECK(ch->transport->wait_fence(f, 10 * kSecond) == 0);
    TransportFence never{1, 50};
    CHECK(ch->transport->wait_fence(never, 0) == -EINVAL); // never created: would never signal
}

TEST_CASE("host death wakes a blocked waiter with EPIPE and later calls fail with EPIPE") {
    auto ch = Channel::open();
    REQUIRE(ch);
    ch->host->set_retire_fences(false);
    ExecbufArgs a;
    a.ring_idx = 1;
    a.fence_out = true;
    TransportFence f;
    REQUIRE(ch->transport->execbuf(a, &f) == 0);
    std::atomic<int> result{1};
    std::thread waiter([&] { result = ch->transport->wait_fence(f, -1); }); // no timeout
    while (ch->transport->stats().host_waits == 0) std::this_thread::yield();
    ch->transport->simulate_host_death();
    waiter.join();
    CHECK(result == -EPIPE);
    CHECK(ch->transport->execbuf(a, &f) == -EPIPE);
    auto g = ccmd::get_param(MSM_PARAM_GPU_ID);
    std::vector<uint8_t> rsp(32);
    CHECK(ch->rb->send_sync(g.span(), rsp, -1) == -EPIPE);
    uint32_t h;
    CHECK(ch->transport->create_blob(bo_args(4096, 3), &h) == -EPIPE);
}

TEST_CASE("close destroys the host context and makes every call fail with EPIPE") {
    auto ch = Channel::open();
    REQUIRE(ch);
    CHECK(ch->host->live_resources() == 1); // the shared page
    ch->transport->close();
    CHECK(ch->host->live_resources() == 0); // B16
    TransportFence f;
    ExecbufArgs a;
    CHECK(ch->transport->execbuf(a, &f) == -EPIPE);
    std::vector<uint8_t> caps(16);
    CHECK(ch->transport->get_capset(VIRTGPU_CAPSET_DRM, 0, caps) == -EPIPE);
    ch->transport->close(); // idempotent
}

TEST_CASE("get_capset copies the host capset and zero-fills the rest of the buffer") {
    MiniHost host;
    InprocTransport t(host::make_inproc_host(host));
    std::vector<uint8_t> buf(200, 0xee);
    const int n = t.get_capset(VIRTGPU_CAPSET_DRM, 0, buf);
    REQUIRE(n == sizeof(virgl_renderer_capset_drm));
    virgl_renderer_capset_drm caps;
    std::memcpy(&caps, buf.data(), sizeof caps);
    CHECK(caps.wire_format_version == 2);
    CHECK(caps.context_type == VIRTGPU_DRM_CONTEXT_MSM);
    CHECK(caps.u.msm.va_size != 0);
    CHECK(buf[199] == 0);
    CHECK(t.get_capset(VIRTGPU_CAPSET_VENUS, 0, buf) == -ENOENT);
}

TEST_CASE("context_init refuses a second init and execbuf refuses a ring past num_rings") {
    MiniHost host;
    InprocTransport t(host::make_inproc_host(host));
    ExecbufArgs a;
    CHECK(t.execbuf(a, nullptr) == -EINVAL); // no context yet
    CHECK(t.context_init(VIRTGPU_CAPSET_DRM, 0) == -EINVAL);
    REQUIRE(t.context_init(VIRTGPU_CAPSET_DRM, 2) == 0);
    CHECK(t.context_init(VIRTGPU_CAPSET_DRM, 2) == -EEXIST);
    a.ring_idx = 2;
    CHECK(t.execbuf(a, nullptr) == -EINVAL);
    std::vector<uint8_t> odd(6, 0);
    a.ring_idx = 0;
    a.cmd = odd;
    CHECK(t.execbuf(a, nullptr) == -EINVAL);
}

TEST_CASE("a malformed batch is aborted on the host and later batches still run") {
    auto ch = Channel::open();
    REQUIRE(ch);
    std::vector<uint8_t> bad = ccmd::nop().bytes;
    bad[0] = 99; // unknown cmd
    ExecbufArgs a;
    a.cmd = bad;
    a.fence_out = true;
    TransportFence f;
    REQUIRE(ch->transport->execbuf(a, &f) == 0); // the guest cannot tell (§12.2: fatal, unreported)
    REQUIRE(ch->transport->wait_fence(f, 10 * kSecond) == 0);
    CHECK(ch->host->last_error() == DecodeError::UnknownCmd);
    uint64_t v = 0;
    CHECK(get_param(*ch->rb, MSM_PARAM_GPU_ID, &v) == 0);
}

TEST_CASE("importing an fd exported by the same context returns the same handle") {
    auto ch = Channel::open();
    REQUIRE(ch);
    auto g = ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 4);
    uint32_t h = 0;
    REQUIRE(ch->rb->create_blob(bo_args(4096, 4), g.span(), &h) == 0);
    int fd = -1;
    REQUIRE(ch->transport->export_blob_fd(h, &fd) == 0);
    uint32_t h2 = 0;
    uint64_t size = 0;
    REQUIRE(ch->transport->import_blob_fd(fd, &h2, &size) == 0);
    CHECK(h2 == h);
    CHECK(size == 4096);
    ::close(fd);
}

TEST_CASE("a second context sharing the host imports an exported blob and sees its bytes") {
    MiniHost host;
    auto a = test::make_inproc(host);
    auto b = test::make_inproc(host);
    REQUIRE(a->context_init(VIRTGPU_CAPSET_DRM, 1) == 0);
    REQUIRE(b->context_init(VIRTGPU_CAPSET_DRM, 1) == 0);
    CHECK(a->ctx_id() != b->ctx_id());
    auto g = ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 2);
    uint32_t ha = 0;
    REQUIRE(a->create_blob(bo_args(4096, 2, g.bytes), &ha) == 0);
    void* pa = nullptr;
    REQUIRE(a->map_blob(ha, 4096, &pa) == 0);
    static_cast<uint8_t*>(pa)[10] = 0x77;
    int fd = -1;
    REQUIRE(a->export_blob_fd(ha, &fd) == 0);
    uint32_t hb = 0;
    uint64_t size = 0;
    REQUIRE(b->import_blob_fd(fd, &hb, &size) == 0);
    CHECK(size == 4096);
    uint32_t ra = 0, rb = 0;
    a->resource_id(ha, &ra);
    b->resource_id(hb, &rb);
    CHECK(ra == rb); // one resource, known to both contexts (B14)
    void* pb = nullptr;
    REQUIRE(b->map_blob(hb, 4096, &pb) == 0);
    CHECK(static_cast<uint8_t*>(pb)[10] == 0x77);
    ::close(fd);
}

TEST_CASE("parse_inproc_uri reads every key with hex and K/M/G suffixes") {
    std::string why;
    auto c = parse_inproc_uri("inproc:rtt_us=200,gpu_us=50,va_size=4G,va_start=0x100000000,gpu_id=630,"
                              "chip_id=0x6030000,oom_after=1K",
                              &why);
    REQUIRE(c);
    CHECK(c->rtt_us == 200);
    CHECK(c->gpu_us == 50);
    CHECK(c->va_size == 4ull << 30);
    CHECK(c->va_start == 0x100000000ull);
    CHECK(c->gpu_id == 630);
    CHECK(c->chip_id == 0x6030000);
    CHECK(c->oom_after == 1024);
    REQUIRE(parse_inproc_uri("inproc"));
    CHECK(parse_inproc_uri("inproc:")->rtt_us == 0);
}

TEST_CASE("parse_inproc_uri refuses unknown keys and bad numbers with a named reason") {
    std::string why;
    CHECK_FALSE(parse_inproc_uri("inproc:rtt=5", &why));
    CHECK(why.find("unknown key 'rtt'") != std::string::npos);
    CHECK_FALSE(parse_inproc_uri("inproc:rtt_us=abc", &why));
    CHECK(why.find("rtt_us") != std::string::npos);
    CHECK_FALSE(parse_inproc_uri("inproc:rtt_us=5G", &why)); // does not fit 32 bits
    CHECK(why.find("32 bits") != std::string::npos);
    CHECK_FALSE(parse_inproc_uri("inproc:va_size", &why));
    CHECK(why.find("missing '='") != std::string::npos);
    CHECK_FALSE(parse_inproc_uri("vtest:/tmp/x", &why));
    CHECK_FALSE(parse_inproc_uri("inproc:va_size=99999999999999999999", &why));
}
