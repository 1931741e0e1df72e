#include "vtest_wire.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace fdnc::vtest {

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_of(int timeout_ms) {
    return timeout_ms < 0 ? Clock::time_point::max() : Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Waits for `events` on sock until deadline: 0 ready, -ETIMEDOUT, -EPIPE (hang-up), -errno.
int wait_ready(int sock, short events, Clock::time_point deadline) {
    for (;;) {
        int ms = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) ms = 0;
            else ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
        }
        pollfd p{sock, events, 0};
        const int n = ::poll(&p, 1, ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -ETIMEDOUT;
        if (p.revents & events) return 0;
        if (p.revents & (POLLHUP | POLLERR)) return -EPIPE; // readable EOF shows up as POLLIN
        if (p.revents & POLLNVAL) return -EBADF;
    }
}

} // namespace

std::string default_socket_path() {
    const char* env = std::getenv(kSocketEnv);
    if (env && *env) return env;
    return kDefaultSocketName;
}

void close_fds(std::vector<int>& fds) {
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
    fds.clear();
}

int read_full(int sock, void* buf, size_t n, int timeout_ms, std::vector<int>* fds) {
    auto* p = static_cast<uint8_t*>(buf);
    const auto deadline = deadline_of(timeout_ms);
    while (n > 0) {
        if (int r = wait_ready(sock, POLLIN, deadline); r < 0) return r;
        iovec iov{p, n};
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 8)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        const ssize_t got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return errno == ECONNRESET ? -EPIPE : -errno;
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (fds) fds->push_back(fd);
                else ::close(fd);
            }
        }
        if (got == 0) return -EPIPE;
        // More fds than fit in ctrl were dropped by the kernel (closed): a hostile peer.
        if (msg.msg_flags & MSG_CTRUNC) return -EPROTO;
        p += got;
        n -= static_cast<size_t>(got);
    }
    return 0;
}

int write_full(int sock, const void* buf, size_t n, int timeout_ms) {
    auto* p = static_cast<const uint8_t*>(buf);
    const auto deadline = deadline_of(timeout_ms);
    while (n > 0) {
        const ssize_t put = ::send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (int r = wait_ready(sock, POLLOUT, deadline); r < 0) return r;
                continue;
            }
            return errno == ECONNRESET ? -EPIPE : -errno;
        }
        p += put;
        n -= static_cast<size_t>(put);
    }
    return 0;
}

int send_fd(int sock, int fd, int timeout_ms) {
    const auto deadline = deadline_of(timeout_ms);
    char byte = 0;
    for (;;) {
        iovec iov{&byte, 1};
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
        const ssize_t put = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put == 1) return 0;
        if (put < 0 && errno == EINTR) continue;
        if (put < 0 && errno == EAGAIN) {
            if (int r = wait_ready(sock, POLLOUT, deadline); r < 0) return r;
            continue;
        }
        return put < 0 ? (errno == ECONNRESET ? -EPIPE : -errno) : -EIO;
    }
}

int recv_fd(int sock, int* fd, int timeout_ms) {
    std::vector<int> fds;
    uint8_t byte;
    int r = read_full(sock, &byte, 1, timeout_ms, &fds);
    if (r == 0 && fds.size() != 1) r = -EPROTO;
    if (r < 0) {
        close_fds(fds);
        return r;
    }
    *fd = fds[0];
    return 0;
}

} // namespace fdnc::vtest
