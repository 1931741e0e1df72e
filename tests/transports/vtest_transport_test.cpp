// VtestTransport against a real fdnc-hostsim process on a real socket.
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "hostsim_process.h"
#include "transport_helpers.h"
#include "virtio_proto/vtest_transport.h"
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
    CHECK(waited);
    CHECK(res != 0);
    CHECK(t->pending_replies() == 0);
    uint32_t res2 = 0;
    REQUIRE(t->resource_id(h, &res2, &waited) == 0);
    CHECK_FALSE(waited);
    CHECK(res2 == res);
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
    a.ring_idx = 0;
    a.fence_out = true;
    TransportFence f;
    REQUIRE(c.t->execbuf(a, &f) == 0);
    CHECK(f.ring_idx == 0);
    CHECK(f.point == 1);
    REQUIRE(c.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(test::shmem_seqno(c.shmem_ptr) == 7);
    // A second fence on the ring gets the next point.
    TransportFence f2;
    REQUIRE(c.t->execbuf(a, &f2) == 0);
    CHECK(f2.point == 2);
    CHECK(c.t->wait_fence(f2, -1) == 0);
}

TEST_CASE("vtest tunnelled GEM_NEW creates a mappable host buffer", "[vtest]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    int ret = 0;
    auto caps = test::read_caps(*c.t, &ret);
    auto gem = ccmd::gem_new(caps.u.msm.va_start, 8192, wire::MSM_BO_WC, 1);
    BlobCreateArgs b;
    b.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    b.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    b.size = 8192;
    b.blob_id = 1;
    b.cmd = gem.bytes;
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
        BlobCreateArgs b;
        b.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
        b.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
        b.size = 4096;
        b.blob_id = i + 1;
        b.cmd = gem.bytes;
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
    REQUIRE(c.t->execbuf({nop, 0, true, -1}, &f) == 0);
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
    REQUIRE(c.t->execbuf({nop, 0, true, in}, &f) == 0);
    CHECK(c.t->wait_fence(f, 20'000'000) == -ETIMEDOUT);
    CHECK(c.t->wait_fence(f, 0) == -ETIMEDOUT);
    const uint64_t one = 1;
    REQUIRE(::write(in, &one, sizeof one) == sizeof one);
    CHECK(c.t->wait_fence(f, 10'000'000'000) == 0);
    CHECK(test::shmem_seqno(c.shmem_ptr) == 9);
    ::close(in);
}

TEST_CASE("vtest calls fail with -EPIPE once the server is killed mid-stream", "[vtest][disconnect]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    Ctx c = open_ctx(hs);
    const int in = ::eventfd(0, EFD_CLOEXEC);
    const auto nop = test::nop_with_seqno(2);
    TransportFence f;
    REQUIRE(c.t->execbuf({nop, 0, true, in}, &f) == 0);
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
    HostsimProcess hs;
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
    REQUIRE(good.t->execbuf({nop, 0, true, -1}, &f) == 0);
    CHECK(good.t->wait_fence(f, 5'000'000'000) == 0);
    CHECK(test::shmem_seqno(good.shmem_ptr) == 11);
    CHECK(hs.log().find("out of range") != std::string::npos);
}

TEST_CASE("vtest clients have separate contexts and address spaces", "[vtest][server]") {
    HostsimProcess hs;
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
            if (int r = t->execbuf({nop, 0, true, -1}, &f) ?: t->wait_fence(f, 30'000'000'000))
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
