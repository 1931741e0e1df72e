// VtestSession framing over a socketpair, in process: every hostile input ends the session with a
// reason, never a crash or a hang.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <future>
#include <random>

#include "host_sim/msm_renderer.h"
#include "host_sim/vtest_server.h"
#include "virtio_proto/vtest_wire.h"

using namespace fdnc;

namespace {

struct Pair {
    int client = -1, server = -1;
    Pair() {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        client = sv[0];
        server = sv[1];
    }
    ~Pair() {
        ::close(client);
        ::close(server);
    }
};

struct Served {
    std::unique_ptr<host::MsmRenderer> host = std::make_unique<host::MsmRenderer>();
    Pair pair;
    std::unique_ptr<VtestSession> session;
    std::future<std::string> result;
    explicit Served(VtestLimits limits = {}) {
        limits.message_timeout_ms = 500;
        session = std::make_unique<VtestSession>(pair.server, *host, 1, limits);
        result = std::async(std::launch::async, [this] { return session->serve(); });
    }
    void send(std::initializer_list<uint32_t> words) {
        std::vector<uint32_t> v(words);
        REQUIRE(vtest::write_full(pair.client, v.data(), v.size() * 4, 1000) == 0);
    }
    void handshake() {
        const char name[8] = "test";
        send({8, vtest::VCMD_CREATE_RENDERER});
        REQUIRE(vtest::write_full(pair.client, name, 8, 1000) == 0);
        send({1, vtest::VCMD_PROTOCOL_VERSION, 4});
        uint32_t rep[3];
        REQUIRE(vtest::read_full(pair.client, rep, sizeof rep, 2000, nullptr) == 0);
        REQUIRE(rep[2] == 4);
    }
    std::string end() {
        ::shutdown(pair.client, SHUT_WR);
        return result.get();
    }
};

} // namespace

TEST_CASE("server drops a client whose first command is not CREATE_RENDERER", "[server]") {
    Served s;
    s.send({0, vtest::VCMD_PING_PROTOCOL_VERSION});
    CHECK_THAT(s.result.get(), Catch::Contains("not CREATE_RENDERER"));
}

TEST_CASE("server drops a client sending an fd with a command header", "[server]") {
    Served s;
    s.handshake();
    // The fd byte where a header is expected: 1 byte + fd, then the rest of a header.
    REQUIRE(vtest::send_fd(s.pair.client, 0, 1000) == 0);
    const uint8_t rest[7] = {};
    REQUIRE(vtest::write_full(s.pair.client, rest, sizeof rest, 1000) == 0);
    CHECK_THAT(s.result.get(), Catch::Contains("fd sent"));
}

TEST_CASE("server drops a fixed-size command with the wrong length", "[server]") {
    Served s;
    s.handshake();
    s.send({3, vtest::VCMD_GET_CAPSET, 6, 0, 0});
    CHECK_THAT(s.result.get(), Catch::Contains("expected 2"));
}

TEST_CASE("server refuses a batch count larger than the payload", "[server]") {
    Served s;
    s.handshake();
    s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
    s.send({9, vtest::VCMD_SUBMIT_CMD2, 2, 1, 9, 0, 9, 0, 0, 0, 0});
    CHECK_THAT(s.result.get(), Catch::Contains("batch_count"));
}

TEST_CASE("server refuses commands pointing outside the payload", "[server]") {
    Served s;
    s.handshake();
    s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
    s.send({9, vtest::VCMD_SUBMIT_CMD2, 1, 1, 9, 100, 9, 0, 0, 0, 0});
    CHECK_THAT(s.result.get(), Catch::Contains("outside the payload"));
}

TEST_CASE("server refuses an in-fence flag without an fd", "[server]") {
    Served s;
    s.handshake();
    s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
    s.send({9, vtest::VCMD_SUBMIT_CMD2, 1, vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX | vtest::VCMD_SUBMIT_CMD2_FLAG_IN_FENCE_FD,
            9, 0, 9, 0, 0, 0, 0});
    const uint8_t zero = 0;
    REQUIRE(vtest::write_full(s.pair.client, &zero, 1, 1000) == 0); // the fd byte without an fd
    CHECK_THAT(s.result.get(), Catch::Contains("exactly one fd"));
}

TEST_CASE("server refuses OUT_FENCE_FD without RING_IDX", "[server]") {
    Served s;
    s.handshake();
    s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
    s.send({9, vtest::VCMD_SUBMIT_CMD2, 1, vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD, 9, 0, 9, 0, 0, 0, 0});
    CHECK_THAT(s.result.get(), Catch::Contains("without RING_IDX"));
}

TEST_CASE("server ends the session of a client that stalls mid-message", "[server]") {
    Served s;
    s.handshake();
    s.send({6, vtest::VCMD_RESOURCE_CREATE_BLOB, 2, 1}); // 2 of 6 dwords
    CHECK_THAT(s.result.get(), Catch::Contains("stalled"));
}

TEST_CASE("server ends a session cleanly when the client leaves", "[server]") {
    Served s;
    s.handshake();
    s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
    s.send({6, vtest::VCMD_RESOURCE_CREATE_BLOB, vtest::VCMD_BLOB_TYPE_HOST3D, vtest::VCMD_BLOB_FLAG_MAPPABLE, 0x4000,
            0, 0, 0});
    uint32_t rep[3];
    REQUIRE(vtest::read_full(s.pair.client, rep, sizeof rep, 2000, nullptr) == 0);
    int fd = -1;
    REQUIRE(vtest::recv_fd(s.pair.client, &fd, 2000) == 0);
    ::close(fd);
    CHECK(s.end() == "client disconnected");
    s.session.reset();
    CHECK(s.host->context_stats(1).resources == 0);
}

TEST_CASE("server survives seeded random message streams", "[server][fuzz]") {
    std::mt19937 rng(1234);
    for (int iter = 0; iter < 150; ++iter) {
        VtestLimits lim;
        lim.max_submit_dwords = 4096;
        lim.in_fence_timeout_ms = 50;
        Served s(lim);
        s.handshake();
        if (rng() % 2) s.send({1, vtest::VCMD_CONTEXT_INIT, 6});
        std::vector<uint32_t> words(1 + rng() % 40);
        for (auto& w : words) {
            const uint32_t r = rng();
            w = r % 4 == 0 ? r : r % 4 == 1 ? r % 40 : r % 4 == 2 ? r % 12 : 0;
        }
        // A command id the server knows, most of the time.
        if (words.size() >= 2 && rng() % 3) words[1] = std::vector<uint32_t>{3, 7, 10, 11, 15, 16, 17, 18, 24, 38}[rng() % 10];
        // The stream may be cut anywhere; the session must end either way.
        (void)vtest::write_full(s.pair.client, words.data(), words.size() * 4, 200);
        const std::string why = s.end();
        CHECK_FALSE(why.empty());
    }
}
