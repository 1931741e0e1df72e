// Fault injection on the vtest transport: a real fdnc-hostsim process killed or stopped
// mid-stream, and a scripted server that answers with a short read. Every case must end in an
// error within the client's io timeout, never a hang or a SIGPIPE.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <thread>

#include "../transports/hostsim_process.h"
#include "reliability_fixture.h"
#include "transports/vtest_transport.h"
#include "virtio_proto/vtest_wire.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {

constexpr int kIoTimeoutMs = 300;

std::unique_ptr<Device> open_vtest(const std::string& path) {
    VtestOptions vo;
    vo.socket_path = path;
    vo.io_timeout_ms = kIoTimeoutMs;
    std::string err;
    auto t = VtestTransport::connect(vo, &err);
    INFO("connect: " << err);
    REQUIRE(t);
    auto dev = Device::open(std::move(t), bounded_options(), &err);
    INFO("Device::open: " << err);
    REQUIRE(dev);
    return dev;
}

// A one-connection server on a fresh socket that reads the client's first bytes, writes `reply`
// (a truncated message) and then closes, or holds the connection open until the client leaves.
class ScriptedServer {
public:
    ScriptedServer(std::string reply, bool hold) {
        char tmpl[] = "/tmp/fdnc-rel-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        dir_ = tmpl;
        path_ = dir_ + "/sock";
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 1) == 0);
        thread_ = std::thread([this, reply, hold] {
            const int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            char buf[256];
            (void)::recv(c, buf, sizeof buf, 0); // CREATE_RENDERER + whatever came with it
            (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
            if (hold)
                while (::recv(c, buf, sizeof buf, 0) > 0) {
                }
            ::close(c);
        });
    }
    ~ScriptedServer() {
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }

private:
    std::string dir_, path_;
    int fd_ = -1;
    std::thread thread_;
};

std::string half_reply() {
    // The first half of a PROTOCOL_VERSION reply header (§8.1): 4 of its 12 bytes.
    const uint32_t len = 1;
    return std::string(reinterpret_cast<const char*>(&len), 4);
}

} // namespace

TEST_CASE("a vtest server killed mid-stream fails the client's wait with a pipe error", "[vtest][fault]") {
    HostsimProcess hs({"--gpu-us", "50000"});
    REQUIRE(hs.ok());
    auto dev = open_vtest(hs.socket_path());
    FrameInFlight frame(*dev, 64 << 10); // 50 ms of GPU work in flight
    hs.kill_now();
    const int w = frame.pipe->wait(frame.fence, kShortTimeoutNs);
    int e = 0;
    CHECK(w == -EPIPE);
    CHECK(dev->pipe_new(1, &e) == nullptr);
    CHECK(e < 0);
    CHECK(dev->status() == -EIO);
    frame.release();
    dev->retire();
    dev->trim_cache();
    CHECK(dev->stats().bos_live == 0);
}

TEST_CASE("a vtest server closing or stalling after a short reply fails the connect with a reason", "[vtest][fault]") {
    const bool stall = GENERATE(false, true); // stalling: only the io timeout ends the read
    INFO((stall ? "stalls" : "closes") << " after half a reply");
    ScriptedServer srv(half_reply(), stall);
    VtestOptions vo;
    vo.socket_path = srv.path();
    vo.io_timeout_ms = kIoTimeoutMs;
    std::string err;
    CHECK(VtestTransport::connect(vo, &err) == nullptr);
    CHECK_FALSE(err.empty());
}

TEST_CASE("a stopped vtest server makes the client's writes fail instead of blocking", "[vtest][fault]") {
    HostsimProcess hs;
    REQUIRE(hs.ok());
    auto dev = open_vtest(hs.socket_path());
    constexpr uint64_t kBoBytes = 1 << 20;
    BoPtr bo = make_bo(*dev, kBoBytes);
    const std::vector<uint8_t> data(kBoBytes, 0x5a);
    REQUIRE(bo->upload(data.data(), 0, 4096) == 0); // learns the resource id while the server runs
    REQUIRE(dev->requests().flush() == 0);
    hs.pause(); // SIGSTOP: nobody reads, the socket buffer fills and a write stays short
    // Uploads are buffered GEM_UPLOAD ccmds: 1 MiB of payload per call, flushed as the request
    // buffer fills. A few MiB exceed any AF_UNIX socket buffer, so one flush must time out.
    int r = 0;
    int calls = 0;
    for (; calls < 256 && r == 0; ++calls) r = bo->upload(data.data(), 0, kBoBytes);
    INFO("uploads before the error: " << calls);
    CHECK((r == -ETIMEDOUT || r == -EPIPE || r == -EIO));
    CHECK(calls < 256);
    CHECK(dev->status() < 0); // the stream is broken mid-message: the device is lost
    CHECK(bo->upload(data.data(), 0, 4096) < 0); // and stays lost, failing fast
    hs.resume();
    bo.reset();
    dev.reset(); // tears down over a broken stream without hanging
}
