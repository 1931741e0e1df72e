// fdnc-delayline as a process ($FDNC_DELAYLINE) between a client and a small server that the test
// runs on its own socket: bytes and fds pass both ways intact and in order, nothing arrives before
// the one-way delay, back-to-back messages are not serialized, a disconnect reaches the other side
// after the queued bytes, and fdnc-info works through it over fdnc-hostsim. Time is asserted as a
// lower bound only, except "N messages within N x delay", which is what a serializing proxy fails.
// The "[.perf]" case prints the proxy's overhead (README figures); it asserts nothing.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../transports/hostsim_process.h"

namespace {

constexpr int kLiveMs = 10000; // liveness bound for waits that must end: never a timing claim

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string delayline_binary() {
    const char* p = std::getenv("FDNC_DELAYLINE");
    return p ? p : "fdnc-delayline";
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/fdnc-delayline-XXXXXX";
        REQUIRE(::mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() {
        if (DIR* d = ::opendir(path.c_str())) {
            while (dirent* e = ::readdir(d))
                if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
                    ::unlink((path + "/" + e->d_name).c_str());
            ::closedir(d);
        }
        ::rmdir(path.c_str());
    }
};

sockaddr_un addr_of(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    return a;
}

int listen_unix(const std::string& path) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    const sockaddr_un a = addr_of(path);
    REQUIRE(::bind(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(s, 16) == 0);
    return s;
}

int connect_unix(const std::string& path) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    const sockaddr_un a = addr_of(path);
    REQUIRE(::connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    return s;
}

bool wait_fd(int fd, short events, int timeout_ms) {
    pollfd p{fd, events, 0};
    int r;
    while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    return r > 0;
}

int accept_one(int listen_fd) {
    REQUIRE(wait_fd(listen_fd, POLLIN, kLiveMs));
    const int s = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(s >= 0);
    return s;
}

void write_all(int fd, const void* buf, size_t n) {
    auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        REQUIRE(w > 0);
        p += w;
        n -= size_t(w);
    }
}

// Plain read(): a receiver that takes no fds, like vtest's header reads. 0 at EOF.
size_t read_exact(int fd, void* buf, size_t n) {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < n) {
        REQUIRE(wait_fd(fd, POLLIN, kLiveMs));
        const ssize_t r = ::read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        REQUIRE(r >= 0);
        if (r == 0) break;
        got += size_t(r);
    }
    return got;
}

bool at_eof(int fd) {
    if (!wait_fd(fd, POLLIN, kLiveMs)) return false;
    char c;
    return ::read(fd, &c, 1) == 0;
}

// EOF, or ECONNRESET: the peer closed with bytes it had not read yet.
bool peer_gone(int fd) {
    if (!wait_fd(fd, POLLIN, kLiveMs)) return false;
    char c;
    const ssize_t r = ::read(fd, &c, 1);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

// vtest §8.1: one byte carrying the fds.
void send_fd_byte(int sock, const std::vector<int>& fds) {
    char byte = 0;
    iovec iov{&byte, 1};
    std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * fds.size()));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    REQUIRE(::sendmsg(sock, &msg, MSG_NOSIGNAL) == 1);
}

std::vector<int> recv_fd_byte(int sock) {
    char byte;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 8)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    REQUIRE(wait_fd(sock, POLLIN, kLiveMs));
    REQUIRE(::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) == 1);
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.push_back(fd);
        }
    }
    return fds;
}

int memfd_with(const std::string& text) {
    const int fd = ::memfd_create("delayline-test", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == ssize_t(text.size()));
    return fd;
}

bool same_file(int a, int b) {
    struct stat sa, sb;
    return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

std::string file_text(int fd) {
    char buf[256];
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

size_t count_fds(pid_t pid) {
    size_t n = 0;
    if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

// The proxy, started in front of `server_path`; ready once it says it listens.
class Proxy {
public:
    Proxy(const TempDir& dir, const std::string& server_path, uint64_t one_way_us)
        : socket_(dir.path + "/proxy.sock"), log_(dir.path + "/proxy.log") {
        std::vector<std::string> args = {delayline_binary(), "--listen", socket_, "--connect", server_path,
                                         "--one-way-us", std::to_string(one_way_us), "-v"};
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0) ::dup2(fd, 2);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        // A process start is not a timed assertion: poll its log until it listens or exits.
        for (int i = 0; i < kLiveMs / 10; ++i) {
            if (log().find("listening on " + socket_) != std::string::npos) return;
            int st;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        FAIL("fdnc-delayline did not start: " << log());
    }
    ~Proxy() {
        if (pid_ > 0) terminate();
    }
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;

    const std::string& socket_path() const { return socket_; }
    pid_t pid() const { return pid_; }
    std::string log() const {
        std::ifstream f(log_);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
    // SIGTERM and reap; the exit status, or -1 for a signal.
    int terminate() {
        ::kill(pid_, SIGTERM);
        int st = 0;
        ::waitpid(pid_, &st, 0);
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    // Stopped for certain (waitpid WUNTRACED) before it returns: what is sent meanwhile queues
    // in the socket and is read by one recvmsg on SIGCONT.
    void pause() {
        ::kill(pid_, SIGSTOP);
        int st = 0;
        REQUIRE(::waitpid(pid_, &st, WUNTRACED) == pid_);
        REQUIRE(WIFSTOPPED(st));
    }
    void resume() { ::kill(pid_, SIGCONT); }

private:
    std::string socket_, log_;
    pid_t pid_ = -1;
};

// A client connected through the proxy to the test's own server socket.
struct Link {
    TempDir dir;
    int listen_fd;
    Proxy proxy;
    int client = -1, server = -1;

    explicit Link(uint64_t one_way_us)
        : listen_fd(listen_unix(dir.path + "/server.sock")), proxy(dir, dir.path + "/server.sock", one_way_us) {
        client = connect_unix(proxy.socket_path());
        server = accept_one(listen_fd);
    }
    ~Link() {
        if (client >= 0) ::close(client);
        if (server >= 0) ::close(server);
        ::close(listen_fd);
    }
};

} // namespace

TEST_CASE("delayline: bytes pass through intact and in order, both ways", "[delayline]") {
    const uint64_t one_way_us = GENERATE(0, 1000);
    Link l(one_way_us);
    constexpr size_t kTotal = 4u << 20;
    std::vector<uint8_t> sent(kTotal);
    uint32_t x = 12345;
    for (auto& b : sent) b = uint8_t((x = x * 1103515245 + 12345) >> 16);

    // The server echoes everything; the client writes in uneven pieces from another thread so
    // neither side blocks the other.
    std::thread echo([&] {
        std::vector<uint8_t> buf(70000);
        for (;;) {
            if (!wait_fd(l.server, POLLIN, kLiveMs)) return;
            const ssize_t r = ::read(l.server, buf.data(), buf.size());
            if (r <= 0) {
                ::shutdown(l.server, SHUT_WR); // EOF in, EOF out
                return;
            }
            write_all(l.server, buf.data(), size_t(r));
        }
    });
    std::thread writer([&] {
        size_t off = 0, piece = 1;
        while (off < kTotal) {
            const size_t n = std::min(piece, kTotal - off);
            write_all(l.client, sent.data() + off, n);
            off += n;
            piece = piece * 7 % 65521 + 1;
        }
        ::shutdown(l.client, SHUT_WR);
    });
    std::vector<uint8_t> got(kTotal);
    const size_t n = read_exact(l.client, got.data(), kTotal);
    writer.join();
    CHECK(n == kTotal);
    CHECK(got == sent);
    // The client's EOF went through to the server, whose close came back as EOF.
    CHECK(at_eof(l.client));
    echo.join();
}

TEST_CASE("delayline: an fd travels on the byte that carried it, both ways", "[delayline]") {
    Link l(GENERATE(0, 1000));
    const char hdr[8] = {'r', 'e', 'q', 'u', 'e', 's', 't', '!'};
    const int mine = memfd_with("to the server");
    // Header and fd byte reach the proxy before it reads (stopped): one recvmsg takes both, and
    // the fd must still arrive on the byte after the header, or the server's read() of the header
    // would take (and close) it.
    l.proxy.pause();
    write_all(l.client, hdr, sizeof hdr);
    send_fd_byte(l.client, {mine});
    l.proxy.resume();
    char got_hdr[8];
    REQUIRE(read_exact(l.server, got_hdr, sizeof got_hdr) == sizeof got_hdr);
    CHECK(std::memcmp(got_hdr, hdr, sizeof hdr) == 0);
    std::vector<int> at_server = recv_fd_byte(l.server);
    REQUIRE(at_server.size() == 1);
    CHECK(same_file(at_server[0], mine));
    CHECK(file_text(at_server[0]) == "to the server");

    // Reply: a header, then two fds on one byte, then more bytes.
    const int a = memfd_with("reply a"), b = memfd_with("reply b");
    l.proxy.pause();
    write_all(l.server, "reply:", 6);
    send_fd_byte(l.server, {a, b});
    write_all(l.server, "tail", 4);
    l.proxy.resume();
    char got_reply[6];
    REQUIRE(read_exact(l.client, got_reply, 6) == 6);
    CHECK(std::string(got_reply, 6) == "reply:");
    std::vector<int> at_client = recv_fd_byte(l.client);
    REQUIRE(at_client.size() == 2);
    CHECK(same_file(at_client[0], a));
    CHECK(same_file(at_client[1], b));
    CHECK(file_text(at_client[1]) == "reply b");
    char tail[4];
    REQUIRE(read_exact(l.client, tail, 4) == 4);
    CHECK(std::string(tail, 4) == "tail");

    for (int fd : at_server) ::close(fd);
    for (int fd : at_client) ::close(fd);
    ::close(mine);
    ::close(a);
    ::close(b);
}

TEST_CASE("delayline: nothing arrives before the one-way delay, no reply before two", "[delayline]") {
    constexpr int64_t kOneWayNs = 20'000'000;
    Link l(kOneWayNs / 1000);
    for (int i = 0; i < 5; ++i) {
        const int64_t sent = now_ns();
        write_all(l.client, &sent, sizeof sent);
        int64_t echoed;
        REQUIRE(read_exact(l.server, &echoed, sizeof echoed) == sizeof echoed);
        const int64_t at_server = now_ns();
        write_all(l.server, &echoed, sizeof echoed);
        int64_t back;
        REQUIRE(read_exact(l.client, &back, sizeof back) == sizeof back);
        const int64_t at_client = now_ns();
        CHECK(echoed == sent);
        CHECK(back == sent);
        CHECK(at_server - sent >= kOneWayNs);
        CHECK(at_client - at_server >= kOneWayNs);
    }
}

TEST_CASE("delayline: back-to-back messages are delayed together, not one after another", "[delayline]") {
    constexpr int kN = 20;
    constexpr int64_t kOneWayNs = 20'000'000;
    Link l(kOneWayNs / 1000);
    struct Msg {
        int64_t seq, sent;
    };
    // 200 us apart, so the proxy reads them as separate chunks (a serializing proxy would then
    // pay the delay once per chunk) while all of them are sent within a fraction of the delay.
    std::thread sender([&] {
        for (int i = 0; i < kN; ++i) {
            const Msg m{i, now_ns()};
            write_all(l.client, &m, sizeof m);
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    int64_t first_sent = 0, last_arrival = 0;
    for (int i = 0; i < kN; ++i) {
        Msg m;
        REQUIRE(read_exact(l.server, &m, sizeof m) == sizeof m);
        const int64_t arrival = now_ns();
        CHECK(m.seq == i);
        CHECK(arrival - m.sent >= kOneWayNs);
        if (i == 0) first_sent = m.sent;
        last_arrival = arrival;
    }
    sender.join();
    INFO("first sent to last arrived: " << (last_arrival - first_sent) / 1000 << " us");
    CHECK(last_arrival - first_sent < kN * kOneWayNs);
}

TEST_CASE("delayline: a disconnect reaches the other side after the bytes queued before it", "[delayline]") {
    Link l(20000);
    // Let the proxy settle (its session threads and sockets) before counting its fds.
    const size_t fds_idle = [&] {
        write_all(l.client, "x", 1);
        char c;
        REQUIRE(read_exact(l.server, &c, 1) == 1);
        return count_fds(l.proxy.pid());
    }();

    SECTION("client leaves") {
        write_all(l.client, "bye", 3);
        const int fd = memfd_with("never read");
        send_fd_byte(l.client, {fd}); // the server never takes it: the proxy must not keep it
        ::close(fd);
        ::close(l.client);
        l.client = -1;
        char got[3];
        REQUIRE(read_exact(l.server, got, 3) == 3);
        CHECK(std::string(got, 3) == "bye");
        char byte;
        CHECK(read_exact(l.server, &byte, 1) == 1); // the fd byte (its fd closed by read())
        CHECK(at_eof(l.server));
        ::close(l.server); // as a server does on EOF; the proxy's session then ends
        l.server = -1;
    }
    SECTION("server leaves") {
        write_all(l.server, "end", 3);
        ::close(l.server);
        l.server = -1;
        char got[3];
        REQUIRE(read_exact(l.client, got, 3) == 3);
        CHECK(std::string(got, 3) == "end");
        CHECK(at_eof(l.client));
        ::close(l.client);
        l.client = -1;
    }
    // The session is gone: both its sockets closed, no fd kept.
    size_t fds = 0;
    for (int i = 0; i < kLiveMs / 10; ++i) {
        fds = count_fds(l.proxy.pid());
        if (fds == fds_idle - 2) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(fds == fds_idle - 2);
}

TEST_CASE("delayline: SIGTERM with a session open exits 0 and removes its socket", "[delayline]") {
    Link l(1000000); // a 1 s delay: queued data is dropped, shutdown waits at most one delay
    write_all(l.client, "pending", 7);
    const std::string path = l.proxy.socket_path();
    CHECK(l.proxy.terminate() == 0);
    CHECK(::access(path.c_str(), F_OK) != 0);
    CHECK(peer_gone(l.client));
    CHECK(peer_gone(l.server));
}

TEST_CASE("delayline: fdnc-info through the proxy over fdnc-hostsim says usable", "[delayline][hostsim]") {
    fdnc::test::HostsimProcess hs;
    REQUIRE(hs.ok());
    TempDir dir;
    Proxy proxy(dir, hs.socket_path(), 100);
    const std::string cmd = fdnc::test::info_binary() + " vtest:" + proxy.socket_path() + " --json 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int st = ::pclose(p);
    INFO(out);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(out.find("\"usable\": true") != std::string::npos);
    CHECK(out.find("\"context_type_name\": \"msm\"") != std::string::npos);
}

namespace {

// Round trips of a 64-byte ping through `path` to an echo thread on `server`.
std::vector<double> ping_pong_us(int client, int server, int iterations) {
    std::thread echo([&] {
        char buf[64];
        for (int i = 0; i < iterations; ++i) {
            if (read_exact(server, buf, sizeof buf) != sizeof buf) return;
            write_all(server, buf, sizeof buf);
        }
    });
    std::vector<double> rtt;
    char msg[64] = {};
    for (int i = 0; i < iterations; ++i) {
        const int64_t t0 = now_ns();
        write_all(client, msg, sizeof msg);
        REQUIRE(read_exact(client, msg, sizeof msg) == sizeof msg);
        rtt.push_back(double(now_ns() - t0) / 1000.0);
    }
    echo.join();
    return rtt;
}

double percentile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

} // namespace

TEST_CASE("perf: delayline overhead and back-to-back spread", "[.perf]") {
    constexpr int kIters = 2000;
    {
        TempDir dir;
        const int lfd = listen_unix(dir.path + "/server.sock");
        const int c = connect_unix(dir.path + "/server.sock"), s = accept_one(lfd);
        const auto rtt = ping_pong_us(c, s, kIters);
        std::printf("direct (no proxy): RTT median %.1f us, p99 %.1f us\n", percentile(rtt, 0.5),
                    percentile(rtt, 0.99));
        ::close(c);
        ::close(s);
        ::close(lfd);
    }
    for (uint64_t one_way : {0, 100, 1000}) {
        Link l(one_way);
        auto rtt = ping_pong_us(l.client, l.server, kIters);
        for (double& r : rtt) r -= 2.0 * double(one_way);
        std::printf("one-way %4llu us: RTT - 2*one_way median %.1f us, p99 %.1f us, min %.1f us\n",
                    (unsigned long long)one_way, percentile(rtt, 0.5), percentile(rtt, 0.99), percentile(rtt, 0.0));
    }
    // Back to back, 50 batches of 20 messages through a 1000 us delay: written at once (one write
    // each, no pause), and 100 us apart (separate chunks for certain). Per message, arrival - send
    // - one_way; per batch, how long its sends took and the spread of its arrivals.
    for (int gap_us : {0, 100}) {
        constexpr int kN = 20, kBatches = 50;
        constexpr uint64_t kOneWay = 1000;
        Link l(kOneWay);
        std::vector<double> extra, send_spread, arrival_spread;
        for (int b = 0; b < kBatches; ++b) {
            std::vector<int64_t> sent(kN), arrived(kN);
            std::thread sender([&] {
                for (int i = 0; i < kN; ++i) {
                    sent[size_t(i)] = now_ns();
                    write_all(l.client, &i, sizeof i);
                    if (gap_us) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
                }
            });
            for (int i = 0; i < kN; ++i) {
                int seq;
                REQUIRE(read_exact(l.server, &seq, sizeof seq) == sizeof seq);
                arrived[size_t(i)] = now_ns();
            }
            sender.join();
            for (int i = 0; i < kN; ++i)
                extra.push_back(double(arrived[size_t(i)] - sent[size_t(i)]) / 1000.0 - double(kOneWay));
            send_spread.push_back(double(sent.back() - sent.front()) / 1000.0);
            arrival_spread.push_back(double(arrived.back() - arrived.front()) / 1000.0);
        }
        std::printf("%d x %d messages, %d us apart, one-way %llu us: sends spread median %.1f us; arrivals "
                    "spread median %.1f us, max %.1f us; arrival - send - one_way median %.1f us, p99 %.1f us\n",
                    kBatches, kN, gap_us, (unsigned long long)kOneWay, percentile(send_spread, 0.5),
                    percentile(arrival_spread, 0.5), percentile(arrival_spread, 1.0), percentile(extra, 0.5),
                    percentile(extra, 0.99));
    }
}
