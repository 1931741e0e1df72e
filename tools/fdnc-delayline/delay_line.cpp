#include "delay_line.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace fdnc::delayline {

namespace {

constexpr size_t kReadSize = 64 * 1024;
// SCM_MAX_FD: the most one skb can carry, so a recvmsg never truncates (and closes) fds.
constexpr size_t kMaxFds = 253;
// Bound on what one direction holds: past it the reader stops reading and the sender feels the
// socket's own backpressure, as it would without the proxy.
constexpr size_t kMaxQueuedBytes = 16u << 20;

timespec to_timespec(int64_t ns) {
    return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
}

void sleep_until(int64_t due_ns) {
    const timespec ts = to_timespec(due_ns);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

} // namespace

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Chunk::Chunk(Chunk&& o) noexcept
    : bytes(std::move(o.bytes)), fds(std::exchange(o.fds, {})), due_ns(o.due_ns) {}

Chunk& Chunk::operator=(Chunk&& o) noexcept {
    if (this != &o) {
        close_fds();
        bytes = std::move(o.bytes);
        fds = std::exchange(o.fds, {});
        due_ns = o.due_ns;
    }
    return *this;
}

Chunk::~Chunk() { close_fds(); }

// Sent or not, our copies go: SCM_RIGHTS gave the receiver its own.
void Chunk::close_fds() {
    for (int fd : fds) ::close(fd);
    fds.clear();
}

Direction::Direction(const char* name, int src, int dst, const Config& cfg, std::function<void()> on_thread_exit)
    : name_(name), src_(src), dst_(dst), cfg_(cfg), on_thread_exit_(std::move(on_thread_exit)) {}

void Direction::start() {
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
}

Direction::~Direction() {
    stop();
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
}

void Direction::stop() {
    {
        std::lock_guard g(mu_);
        stop_ = true;
    }
    data_cv_.notify_all();
    space_cv_.notify_all();
}

// False once the process is stopping.
bool Direction::wait_ready(int fd, short events) const {
    pollfd p[2] = {{fd, events, 0}, {cfg_.stop_fd, POLLIN, 0}};
    for (;;) {
        if (stop_) return false;
        const int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[1].revents) return false;
        // POLLHUP/POLLERR: let the following recvmsg/sendmsg report it.
        if (p[0].revents) return true;
    }
}

void Direction::read_loop() {
    std::vector<uint8_t> buf(kReadSize);
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
    while (wait_ready(src_, POLLIN)) {
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        const ssize_t got = ::recvmsg(src_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        const int64_t arrival = now_ns();
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got < 0) {
            // ECONNRESET: the peer left with unread data; a shutdown it did not ask for.
            if (cfg_.verbose) cfg_.log(std::string(name_) + ": read: " + std::strerror(errno));
            break;
        }
        Chunk c;
        for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
            if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
            const size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
                c.fds.push_back(fd);
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) cfg_.log(std::string(name_) + ": fds truncated by the kernel (dropped)");
        if (got == 0) break; // EOF (a stream never carries fds without a byte)
        c.bytes.assign(buf.data(), buf.data() + got);
        c.due_ns = arrival + cfg_.one_way_ns;

        std::unique_lock lk(mu_);
        space_cv_.wait(lk, [&] { return stop_ || queued_bytes_ < kMaxQueuedBytes; });
        if (stop_) break;
        queued_bytes_ += c.bytes.size();
        queue_.push_back(std::move(c));
        lk.unlock();
        data_cv_.notify_one();
    }
    {
        std::lock_guard g(mu_);
        eof_ = true;
    }
    data_cv_.notify_one();
    on_thread_exit_();
}

void Direction::write_loop() {
    bool broken = false;
    for (;;) {
        std::unique_lock lk(mu_);
        data_cv_.wait(lk, [&] { return stop_ || eof_ || !queue_.empty(); });
        if (stop_ || queue_.empty()) break; // stopping, or EOF with everything delivered
        Chunk c = std::move(queue_.front());
        queue_.pop_front();
        queued_bytes_ -= c.bytes.size();
        lk.unlock();
        space_cv_.notify_one();

        if (broken) continue; // drain (closing fds) until the reader sees the EOF we caused
        // Absolute deadline: the time spent reading, queueing and sending earlier chunks is not
        // added on top, and a chunk already due goes out at once.
        if (c.due_ns > now_ns()) sleep_until(c.due_ns);
        if (stop_) break;
        if (!send_chunk(c)) {
            // dst cannot take more (gone, or we are stopping). Shutting src's read side makes
            // the sender's next write fail with EPIPE, as it would on a direct connection, and
            // ends our reader.
            broken = true;
            ::shutdown(src_, SHUT_RD);
        }
    }
    // Everything queued before the EOF has been delivered: pass the EOF on.
    ::shutdown(dst_, SHUT_WR);
    on_thread_exit_();
}

// The kernel hands over a chunk's fds only at the end of the read that returns them: the skb
// that carried them is the last one in the chunk (a read stops right after it), but where it
// began is lost. So the fds ride on the chunk's last byte, sent alone. That keeps vtest's
// framing (a header written plainly, then one byte carrying the fd, PROTOCOL.md §8.1): a
// receiver that read()s the header must not find the fd on it, or read() would close it.
bool Direction::send_chunk(Chunk& c) {
    const size_t n = c.bytes.size();
    if (c.fds.empty()) return send_bytes(c.bytes.data(), n, {});
    if (!send_bytes(c.bytes.data(), n - 1, {})) return false;
    if (!send_bytes(c.bytes.data() + n - 1, 1, c.fds)) return false;
    fds_forwarded_ += c.fds.size();
    return true;
}

bool Direction::send_bytes(const uint8_t* p, size_t n, const std::vector<int>& fds) {
    std::vector<char> ctrl;
    if (!fds.empty()) ctrl.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    while (n > 0) {
        iovec iov{const_cast<uint8_t*>(p), n};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (!ctrl.empty()) {
            msg.msg_control = ctrl.data();
            msg.msg_controllen = ctrl.size();
            cmsghdr* h = CMSG_FIRSTHDR(&msg);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(h), fds.data(), sizeof(int) * fds.size());
        }
        const ssize_t put = ::sendmsg(dst_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0 && errno == EAGAIN) {
            if (!wait_ready(dst_, POLLOUT)) return false;
            continue;
        }
        if (put < 0) {
            if (cfg_.verbose) cfg_.log(std::string(name_) + ": write: " + std::strerror(errno));
            return false;
        }
        ctrl.clear(); // the fds went with the first bytes of this send
        p += put;
        n -= static_cast<size_t>(put);
        forwarded_ += static_cast<uint64_t>(put);
    }
    return true;
}

OwnedFd::~OwnedFd() {
    if (fd >= 0) ::close(fd);
}

Session::Session(int client, int server, const Config& cfg, std::function<void()> on_done)
    : client_(client), server_(server), cfg_(cfg), on_done_(std::move(on_done)),
      to_server_("client->server", client, server, cfg, [this] { thread_exit(); }),
      to_client_("server->client", server, client, cfg, [this] { thread_exit(); }) {
    // Both directions exist before any thread can run thread_exit().
    to_server_.start();
    to_client_.start();
}

Session::~Session() { stop(); } // then the directions join, then the sockets close

void Session::stop() {
    to_server_.stop();
    to_client_.stop();
}

void Session::thread_exit() {
    if (running_.fetch_sub(1) != 1) return;
    if (cfg_.verbose)
        cfg_.log("session done: " + std::to_string(to_server_.bytes_forwarded()) + " bytes/" +
                 std::to_string(to_server_.fds_forwarded()) + " fds to the server, " +
                 std::to_string(to_client_.bytes_forwarded()) + " bytes/" +
                 std::to_string(to_client_.fds_forwarded()) + " fds to the client");
    on_done_();
}

} // namespace fdnc::delayline
