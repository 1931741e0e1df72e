// VtestTransport against a real fdnc-hostsim process on a real socket.
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "hostsim_process.h"
#include "transport_helpers.h"
#include "transports/vtest_transport.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/vtest_wire.h"

using namespace fdnc;
using fdnc::test::HostsimProcess;

namespace {

std::unique_ptr<VtestTransport> connect_to(const HostsimProcess& hs, int io_timeout_ms = 5000) {
    VtestOptions o;
    o.socket_path = hs.socket_path();
    o.io_timeout_ms = io_timeout_ms;
    std::string err;
    auto t = VtestTransport::connect(o, &err);
    INFO(err);
    REQUIRE(t);
    return t;
}

// Connected, context initialized, shared page created and mapped.
struct Ctx {
    std::unique_ptr<VtestTransport> t;
    uint32_t shmem = 0;
    void* shmem_ptr = nullptr;
};

Ctx open_ctx(const HostsimProcess& hs, int io_timeout_ms = 5000) {
    Ctx c;
    c.t = connect_to(hs, io_timeout_ms);
    REQUIRE(c.t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    REQUIRE(c.t->create_blob(test::shmem_args(), &c.shmem) == 0);
    REQUIRE(c.t->map_blob(c.shmem, test::kShmemSize, &c.shmem_ptr) == 0);
    return c;
}

int raw_connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return s;
}

} // namespace

TEST_CASE("vtest transport negotiates protocol 4 with fdnc-hostsim", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    VtestProbe probe;
    VtestOptions o;
    o.socket_path = hs.socket_path();
    std::string err;
    auto t = VtestTransport::connect(o, &err, &probe);
    REQUIRE(t);
    CHECK(probe.ping_supported);
    CHECK(t->protocol_version() == vtest::kProtocolVersion);
    CHECK(t->info().name == "vtest");
    CHECK(t->info().host_assigns_res_id);
}

TEST_CASE("vtest connect to a path with no server names the path and the errno", "[vtest]") {
    VtestOptions o;
    o.socket_path = "/tmp/fdnc-no-such-dir/none.sock";
    std::string err;
    auto t = VtestTransport::connect(o, &err);
    CHECK_FALSE(t);
    CHECK(err.find("/tmp/fdnc-no-such-dir/none.sock") != std::string::npos);
    CHECK(err.find(std::strerror(ENOENT)) != std::string::npos);
}

TEST_CASE("vtest get_capset returns the host's msm capset with the configured ids", "[vtest]") {
    HostsimProcess hs({"--gpu-id", "640", "--va-size", "0x100000000"});
    REQUIRE(hs.ok());
    auto t = connect_to(hs);
    int ret = 0;
    auto caps = test::read_caps(*t, &ret);
    CHECK(ret >= static_cast<int>(wire::kMesa242CapsetSize));
    CHECK(caps.wire_format_version == wire::kDrmCapsetWireFormatVersion);
    CHECK(caps.context_type == wire::VIRTGPU_DRM_CONTEXT_MSM);
    CHECK(caps.u.msm.gpu_id == 640);
    CHECK(caps.u.msm.va_size == 0x100000000ull);
}

TEST_CASE("vtest get_capset of a capset the host lacks is -ENOENT", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    auto t = connect_to(hs);
    uint8_t buf[64];
    CHECK(t->get_capset(wire::VIRTGPU_CAPSET_VENUS, 0, buf) == -ENOENT);
    // The stream stays in sync afterwards.
    int ret = 0;
    test::read_caps(*t, &ret);
    CHECK(ret > 0);
}

TEST_CASE("vtest blob create returns before the reply and resource_id reads it", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    auto t = connect_to(hs);
    REQUIRE(t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    uint32_t h = 0;
    REQUIRE(t->create_blob(test::shmem_args(), &h) == 0);
    CHECK(h != 0);
    CHECK(t->pending_replies() == 1);
    uint32_t res = 0;
    bool waited = false;
    REQUIRE(t->resource_id(h, &res, &waited) == 0);
    CHECK(res != 0);
    CHECK(t->pending_replies() == 0);
    uint32_t res2 = 0;
    REQUIRE(t->resource_id(h, &res2, &waited) == 0);
    CHECK_FALSE(waited);
    CHECK(res2 == res);
}

// A resource id counts as a host wait only when its reply had not arrived: reading a reply that is
// already in the socket is not waiting on the host (Mesa-on-fdnc frames counted one "wait" per new
// buffer over vtest when every reply was already there).
TEST_CASE("vtest resource_id waits only for a reply that has not arrived", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    auto t = connect_to(hs);
    REQUIRE(t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    uint32_t arrived = 0, late = 0, res = 0;
    REQUIRE(t->create_blob(test::shmem_args(), &arrived) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // the reply is in the socket now
    bool waited = true;
    REQUIRE(t->resource_id(arrived, &res, &waited) == 0);
    CHECK_FALSE(waited);

    int ret = 0;
    const auto caps = test::read_caps(*t, &ret);
    hs.pause(); // the next reply cannot have arrived when resource_id asks for it
    auto gem_new = ccmd::gem_new(caps.u.msm.va_start, 0x1000, wire::MSM_BO_WC, 1);
    REQUIRE(t->create_blob(test::gem_blob_args(gem_new.span(), 0x1000, 1), &late) == 0);
    std::thread resume([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        hs.resume();
    });
    waited = false;
    const int r = t->resource_id(late, &res, &waited);
    resume.join();
    REQUIRE(r == 0);
    CHECK(waited);
}

TEST_CASE("vtest shared page is host memory with rsp_mem_offset 16", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    const auto* s = static_cast<const wire::msm_shmem*>(c.shmem_ptr);
    CHECK(s->base.rsp_mem_offset == 16);
}

TEST_CASE("vtest execbuf runs ccmds and its fence signals after them", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    const auto nop = test::nop_with_seqno(7);
    ExecbufArgs a;
    a.cmd = nop;
    a.ring_idx = 1;
    a.fence_out = true;
    TransportFence f;
    REQUIRE(c.t->execbuf(a, &f) == 0);
    CHECK(f.ring_idx == 1);
    CHECK(f.point == 1);
    REQUIRE(c.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(test::shmem_seqno(c.shmem_ptr) == 7);
    // A second fence on the ring gets the next point.
    TransportFence f2;
    REQUIRE(c.t->execbuf(a, &f2) == 0);
    CHECK(f2.point == 2);
    CHECK(c.t->wait_fence(f2, -1) == 0);
}

TEST_CASE("vtest refuses a ring-0 out-fence, which the real server never answers", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    CHECK_FALSE(c.t->info().ring0_fences);
    const auto nop = test::nop_with_seqno(4);
    TransportFence f;
    CHECK(c.t->execbuf({nop, 0, true, -1}, &f) == -EINVAL);
    CHECK_FALSE(f);
    // Nothing was sent and the stream is intact: the unfenced batch runs.
    REQUIRE(c.t->execbuf({nop, 0, false, -1}, nullptr) == 0);
    for (int i = 0; i < 5000 && test::shmem_seqno(c.shmem_ptr) != 4; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(test::shmem_seqno(c.shmem_ptr) == 4);
    CHECK(c.t->last_error().empty());
}

TEST_CASE("fdnc-hostsim sends no fd for a ring-0 out-fence, like virgl_test_server", "[vtest][server]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    const int s = raw_connect(hs.socket_path());
    const char name[] = "raw";
    const uint32_t hdr[2] = {sizeof name, vtest::VCMD_CREATE_RENDERER};
    REQUIRE(::write(s, hdr, sizeof hdr) == sizeof hdr);
    REQUIRE(::write(s, name, sizeof name) == sizeof name);
    const uint32_t ver[3] = {1, vtest::VCMD_PROTOCOL_VERSION, vtest::kProtocolVersion};
    REQUIRE(::write(s, ver, sizeof ver) == sizeof ver);
    uint32_t ver_rep[3] = {};
    REQUIRE(::recv(s, ver_rep, sizeof ver_rep, MSG_WAITALL) == sizeof ver_rep);
    const uint32_t init[3] = {1, vtest::VCMD_CONTEXT_INIT, wire::VIRTGPU_CAPSET_DRM};
    REQUIRE(::write(s, init, sizeof init) == sizeof init);
    // SUBMIT_CMD2, one empty batch on ring 0 with RING_IDX | OUT_FENCE_FD (§8.4).
    uint32_t msg[2 + 1 + vtest::kBatchDwords] = {1 + vtest::kBatchDwords, vtest::VCMD_SUBMIT_CMD2, 1};
    uint32_t* b = msg + 3;
    b[vtest::kBatchFlags] = vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX | vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD;
    b[vtest::kBatchCmdOffset] = 1 + vtest::kBatchDwords;
    b[vtest::kBatchSyncOffset] = 1 + vtest::kBatchDwords;
    b[vtest::kBatchRingIdx] = 0;
    REQUIRE(::write(s, msg, sizeof msg) == sizeof msg);
    // A PING after it is answered, and nothing (no fd byte) comes before its reply.
    const uint32_t ping[2] = {0, vtest::VCMD_PING_PROTOCOL_VERSION};
    REQUIRE(::write(s, ping, sizeof ping) == sizeof ping);
    uint32_t rep[2] = {};
    const ssize_t got = ::recv(s, rep, sizeof rep, MSG_WAITALL);
    INFO(hs.log());
    REQUIRE(got == sizeof rep);
    CHECK(rep[0] == 0);
    CHECK(rep[1] == vtest::VCMD_PING_PROTOCOL_VERSION);
    ::close(s);
}

TEST_CASE("fdnc-hostsim serves one connection at a time unless --multi-clients", "[vtest][server]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx first = open_ctx(hs);
    // The second connection is accepted by the kernel (backlog) but not served: it times out.
    VtestOptions o;
    o.socket_path = hs.socket_path();
    o.io_timeout_ms = 300;
    std::string err;
    CHECK_FALSE(VtestTransport::connect(o, &err));
    CHECK_THAT(err, Catch::Contains("timed out"));
    // Once the first leaves, the next client is served.
    first.t.reset();
    o.io_timeout_ms = 5000;
    auto next = VtestTransport::connect(o, &err);
    INFO(err);
    CHECK(next);

    HostsimProcess multi({"--multi-clients"});
    REQUIRE(multi.ok());
    Ctx a = open_ctx(multi);
    Ctx b2 = open_ctx(multi);
    CHECK(a.t->last_error().empty());
    CHECK(b2.t->last_error().empty());
}

TEST_CASE("vtest tunnelled GEM_NEW creates a mappable host buffer", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 8192, wire::MSM_BO_WC, 1);
    const BlobCreateArgs b = test::gem_blob_args(gem.bytes, 8192, 1);
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(b, &h) == 0);
    void* p = nullptr;
    REQUIRE(c.t->map_blob(h, 8192, &p) == 0);
    std::memset(p, 0x5a, 8192);
    // A second map of the same handle is the same mapping; an fd export sees the same bytes.
    void* p2 = nullptr;
    REQUIRE(c.t->map_blob(h, 8192, &p2) == 0);
    CHECK(p2 == p);
    int fd = -1;
    REQUIRE(c.t->export_blob_fd(h, &fd) == 0);
    uint8_t byte = 0;
    CHECK(::pread(fd, &byte, 1, 4096) == 1);
    CHECK(byte == 0x5a);
    ::close(fd);
    CHECK(c.t->close_blob(h) == 0);
    CHECK(c.t->close_blob(h) == -ENOENT);
}

TEST_CASE("vtest many pipelined creates never deadlock and get distinct res_ids", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    std::vector<uint32_t> handles;
    for (uint32_t i = 0; i < 600; ++i) {
        auto gem = ccmd::gem_new(caps.u.msm.va_start + uint64_t(i) * 4096, 4096, wire::MSM_BO_WC, i + 1);
        const BlobCreateArgs b = test::gem_blob_args(gem.bytes, 4096, i + 1);
        uint32_t h = 0;
        REQUIRE(c.t->create_blob(b, &h) == 0);
        handles.push_back(h);
    }
    std::set<uint32_t> ids;
    for (uint32_t h : handles) {
        uint32_t res = 0;
        REQUIRE(c.t->resource_id(h, &res) == 0);
        ids.insert(res);
    }
    CHECK(ids.size() == handles.size());
}

TEST_CASE("vtest close of a blob whose reply is pending does not wait", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 4096, wire::MSM_BO_WC, 5);
    BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, 5, gem.bytes};
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(b, &h) == 0);
    REQUIRE(c.t->pending_replies() == 1);
    CHECK(c.t->close_blob(h) == 0);
    CHECK(c.t->pending_replies() == 1);
    // The unref goes out once the reply is read; the context stays healthy.
    const auto nop = test::nop_with_seqno(3);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 1, true, -1}, &f) == 0);
    CHECK(c.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(c.t->pending_replies() == 0);
    CHECK(c.t->last_error().empty());
}

TEST_CASE("vtest wait_fence times out while the batch's in-fence is unsignaled", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    const int in = ::eventfd(0, EFD_CLOEXEC);
    REQUIRE(in >= 0);
    const auto nop = test::nop_with_seqno(9);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 1, true, in}, &f) == 0);
    CHECK(c.t->wait_fence(f, 20'000'000) == -ETIMEDOUT);
    CHECK(c.t->wait_fence(f, 0) == -ETIMEDOUT);
    const uint64_t one = 1;
    REQUIRE(::write(in, &one, sizeof one) == sizeof one);
    CHECK(c.t->wait_fence(f, 10'000'000'000) == 0);
    CHECK(test::shmem_seqno(c.shmem_ptr) == 9);
    ::close(in);
}

// Issue 13: a fence waiter dropped the lock to poll the socket for its reply; another thread
// read that reply under the lock meanwhile (resource_id drains the stream in order), so the
// waiter slept in poll until its own timeout with its fence already known. The seam runs the
// other thread's read exactly in that window.
TEST_CASE("vtest a fence waiter wakes when another thread reads its reply", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    VtestOptions o;
    o.socket_path = hs.socket_path();
    VtestTransport* tp = nullptr;
    uint32_t blob = 0;
    int in = -1;
    bool drained = false;
    int drain_ret = -1;
    o.before_reply_poll = [&] {
        if (drained) return;
        drained = true;
        const uint64_t one = 1;
        REQUIRE(::write(in, &one, sizeof one) == sizeof one); // the host may now answer the fence
        uint32_t res = 0;
        drain_ret = tp->resource_id(blob, &res); // reads the fence reply, then the blob's
    };
    std::string err;
    auto t = VtestTransport::connect(o, &err);
    REQUIRE(t);
    tp = t.get();
    REQUIRE(t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) == 0);
    in = ::eventfd(0, EFD_CLOEXEC);
    REQUIRE(in >= 0);
    const auto nop = test::nop_with_seqno(5);
    TransportFence f;
    REQUIRE(t->execbuf({nop, 1, true, in}, &f) == 0); // answered once `in` signals
    REQUIRE(t->create_blob(test::shmem_args(), &blob) == 0);
    const auto start = std::chrono::steady_clock::now();
    const int r = t->wait_fence(f, 3'000'000'000); // the bug: -ETIMEDOUT after 3 s
    const auto waited = std::chrono::steady_clock::now() - start;
    INFO("waited " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() << " ms");
    CHECK(r == 0);
    CHECK(drained);
    CHECK(drain_ret == 0);
    ::close(in);
}

TEST_CASE("vtest calls fail with -EPIPE once the server is killed mid-stream", "[vtest][disconnect]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    const int in = ::eventfd(0, EFD_CLOEXEC);
    const auto nop = test::nop_with_seqno(2);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 1, true, in}, &f) == 0);
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(test::shmem_args(), &h) == 0); // a second shmem: never answered
    std::thread killer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        hs.kill_now();
    });
    // An unbounded wait still returns: the socket hang-up ends it.
    CHECK(c.t->wait_fence(f, -1) == -EPIPE);
    killer.join();
    uint32_t res = 0;
    CHECK(c.t->resource_id(h, &res) == -EPIPE);
    CHECK(c.t->execbuf({nop, 0, false, -1}, nullptr) == -EPIPE);
    CHECK(c.t->last_error().find("closed") != std::string::npos);
    ::close(in);
}

TEST_CASE("vtest a stalled server gives -ETIMEDOUT instead of a hang", "[vtest][disconnect]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs, 200);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    hs.pause();
    // A valid create (a second shared page would make the server drop us instead).
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 4096, wire::MSM_BO_WC, 1);
    BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, 1, gem.bytes};
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(b, &h) == 0);
    uint32_t res = 0;
    CHECK(c.t->resource_id(h, &res) == -ETIMEDOUT);
    // The stream position is lost: from now on the transport is dead.
    CHECK(c.t->resource_id(h, &res) == -EPIPE);
    CHECK_FALSE(c.t->last_error().empty());
    hs.resume();
}

TEST_CASE("vtest a malformed client is dropped while another carries on", "[vtest][server]") {
    HostsimProcess hs({"--multi-clients"});
    REQUIRE(hs.ok());
    Ctx good = open_ctx(hs);
    const int bad = raw_connect(hs.socket_path());
    const char name[] = "bad";
    const uint32_t hdr[2] = {sizeof name, vtest::VCMD_CREATE_RENDERER};
    REQUIRE(::write(bad, hdr, sizeof hdr) == sizeof hdr);
    REQUIRE(::write(bad, name, sizeof name) == sizeof name);
    const uint32_t huge[2] = {0xFFFFFFF0u, vtest::VCMD_SUBMIT_CMD2};
    REQUIRE(::write(bad, huge, sizeof huge) == sizeof huge);
    char byte;
    CHECK(::read(bad, &byte, 1) == 0); // the server hung up on it
    ::close(bad);
    // The good client still works.
    const auto nop = test::nop_with_seqno(11);
    TransportFence f;
    REQUIRE(good.t->execbuf({nop, 1, true, -1}, &f) == 0);
    CHECK(good.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(test::shmem_seqno(good.shmem_ptr) == 11);
    CHECK(hs.log().find("out of range") != std::string::npos);
}

TEST_CASE("vtest clients have separate contexts and address spaces", "[vtest][server]") {
    HostsimProcess hs({"--multi-clients"});
    REQUIRE(hs.ok());
    std::vector<std::thread> threads;
    std::mutex mu;
    std::vector<std::string> failures;
    for (int i = 0; i < 6; ++i) {
        threads.emplace_back([&, i] {
            auto fail = [&](const std::string& what) {
                std::lock_guard g(mu);
                failures.push_back("client " + std::to_string(i) + ": " + what);
            };
            VtestOptions o;
            o.socket_path = hs.socket_path();
            o.io_timeout_ms = 30000; // six clients on a loaded (or sanitized) machine
            std::string err;
            auto t = VtestTransport::connect(o, &err);
            if (!t) return fail("connect: " + err);
            if (t->context_init(wire::VIRTGPU_CAPSET_DRM, 4) != 0) return fail("context_init");
            uint32_t sh = 0;
            void* p = nullptr;
            if (int r = t->create_blob(test::shmem_args(), &sh) ?: t->map_blob(sh, test::kShmemSize, &p))
                return fail("shmem " + std::to_string(r) + " " + t->last_error());
            wire::virgl_renderer_capset_drm caps{};
            t->get_capset(6, 0, {reinterpret_cast<uint8_t*>(&caps), sizeof caps});
            // Every client maps the same iova: only separate address spaces allow that.
            auto gem = ccmd::gem_new(caps.u.msm.va_start, 4096, wire::MSM_BO_WC, 1);
            BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, 1, gem.bytes};
            uint32_t h = 0, res = 0;
            if (int r = t->create_blob(b, &h) ?: t->resource_id(h, &res))
                return fail("blob " + std::to_string(r) + " " + t->last_error());
            const auto nop = test::nop_with_seqno(100 + i);
            TransportFence f;
            if (int r = t->execbuf({nop, 1, true, -1}, &f) ?: t->wait_fence(f, 30'000'000'000))
                return fail("fence " + std::to_string(r) + " " + t->last_error());
            const auto* s = static_cast<const wire::msm_shmem*>(p);
            if (s->async_error != 0) return fail("async_error " + std::to_string(s->async_error));
            if (test::shmem_seqno(p) != uint32_t(100 + i)) return fail("seqno " + std::to_string(test::shmem_seqno(p)));
        });
    }
    for (auto& t : threads) t.join();
    for (const auto& f : failures) INFO(f);
    CHECK(failures.empty());
    if (!failures.empty()) FAIL_CHECK(failures.front() + "\n" + hs.log());
}

TEST_CASE("fdnc-hostsim exits cleanly on SIGTERM and removes its socket", "[vtest][server]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    const std::string path = hs.socket_path();
    CHECK(hs.terminate() == 0);
    CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("an injected host GEM_NEW failure drops the vtest client and it sees -EPIPE", "[vtest][server]") {
    HostsimProcess hs({"--fail", "gem_new:1:ENOSPC"});
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 4096, wire::MSM_BO_WC, 1);
    BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, 1, gem.bytes};
    uint32_t h = 0;
    REQUIRE(c.t->create_blob(b, &h) == 0); // never waits: the failure surfaces later
    uint32_t res = 0;
    // §12.2: a failed GEM_NEW is fatal over vtest; the server drops the connection.
    CHECK(c.t->resource_id(h, &res) == -EPIPE);
    CHECK_THAT(c.t->last_error(), Catch::Contains("closed"));
    CHECK_THAT(hs.log(), Catch::Contains("dropped"));
}

namespace {
size_t open_fds(pid_t pid) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
    return n;
}
} // namespace

TEST_CASE("fdnc-hostsim closes every fd of a client when it leaves, like the real server", "[vtest][server]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    // Idle: the listening socket and the server's own fds, once the readiness probe's connection
    // is gone; a served client must leave none behind.
    for (int i = 0; i < 500 && hs.log().find("client 1 left") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const size_t idle = open_fds(hs.pid());
    {
        Ctx c = open_ctx(hs);
        int ret = 0;
        auto caps = test::read_caps(*c.t, &ret);
        for (uint32_t i = 0; i < 8; ++i) {
            auto gem = ccmd::gem_new(caps.u.msm.va_start + i * 0x10000ull, 0x10000, wire::MSM_BO_WC, i + 1);
            BlobCreateArgs b{wire::VIRTGPU_BLOB_MEM_HOST3D, wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 0x10000, i + 1, gem.bytes};
            uint32_t h = 0;
            void* p = nullptr;
            REQUIRE(c.t->create_blob(b, &h) == 0);
            REQUIRE(c.t->map_blob(h, 0x10000, &p) == 0);
            int fd = -1;
            REQUIRE(c.t->export_blob_fd(h, &fd) == 0);
            ::close(fd);
        }
        const auto nop = test::nop_with_seqno(1);
        TransportFence f;
        REQUIRE(c.t->execbuf({nop, 1, true, -1}, &f) == 0);
        REQUIRE(c.t->wait_fence(f, 5'000'000'000) == 0);
        CHECK(open_fds(hs.pid()) > idle);
    }
    size_t now = 0;
    for (int i = 0; i < 500; ++i) { // the server notices the hang-up on its own thread
        now = open_fds(hs.pid());
        if (now == idle && hs.log().find("client 2 left") != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    INFO(hs.log());
    CHECK(now == idle);
}
