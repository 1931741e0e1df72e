#include "transports/fence_fd_timeline.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace fdnc {

FenceFdTimelines::~FenceFdTimelines() { reset(0); }

void FenceFdTimelines::reset(uint32_t num_rings) {
    std::lock_guard lk(mu_);
    for (Ring& r : rings_)
        for (auto& [p, fd] : r.fds)
            if (fd >= 0) ::close(fd);
    rings_.assign(num_rings, Ring{});
}

uint32_t FenceFdTimelines::num_rings() const {
    std::lock_guard lk(mu_);
    return static_cast<uint32_t>(rings_.size());
}

uint64_t FenceFdTimelines::reserve(uint32_t ring) {
    std::lock_guard lk(mu_);
    Ring& r = rings_.at(ring);
    const uint64_t p = ++r.assigned;
    r.fds.emplace(p, -1);
    return p;
}

void FenceFdTimelines::attach(uint32_t ring, uint64_t point, int fd) {
    std::lock_guard lk(mu_);
    Ring& r = rings_.at(ring);
    auto it = r.fds.find(point);
    if (it == r.fds.end() || point <= r.signaled) {
        if (fd >= 0) ::close(fd); // already known signaled through a later point
        return;
    }
    if (it->second >= 0) ::close(it->second);
    it->second = fd;
}

uint64_t FenceFdTimelines::last(uint32_t ring) const {
    std::lock_guard lk(mu_);
    return ring < rings_.size() ? rings_[ring].assigned : 0;
}

FenceLookup FenceFdTimelines::lookup(uint32_t ring, uint64_t point, int* fd) {
    std::lock_guard lk(mu_);
    if (ring >= rings_.size()) return FenceLookup::Unknown;
    Ring& r = rings_[ring];
    if (point == 0 || point <= r.signaled) return FenceLookup::Signaled;
    if (point > r.assigned) return FenceLookup::Unknown;
    auto it = r.fds.find(point);
    if (it == r.fds.end()) return FenceLookup::Signaled;
    if (it->second < 0) return FenceLookup::Pending;
    *fd = ::dup(it->second);
    if (*fd < 0) return FenceLookup::Unknown;
    return FenceLookup::Pollable;
}

void FenceFdTimelines::mark_locked(Ring& r, uint64_t point) {
    if (point <= r.signaled) return;
    r.signaled = point;
    for (auto it = r.fds.begin(); it != r.fds.end() && it->first <= point;) {
        if (it->second >= 0) ::close(it->second);
        it = r.fds.erase(it);
    }
}

void FenceFdTimelines::mark_signaled(uint32_t ring, uint64_t point) {
    std::lock_guard lk(mu_);
    if (ring < rings_.size()) mark_locked(rings_[ring], point);
}

void FenceFdTimelines::reap(uint32_t ring) {
    std::lock_guard lk(mu_);
    if (ring >= rings_.size()) return;
    Ring& r = rings_[ring];
    // Newest first: one signaled fd retires everything before it.
    for (auto it = r.fds.rbegin(); it != r.fds.rend(); ++it) {
        if (it->second < 0) continue;
        pollfd p{it->second, POLLIN, 0};
        if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
            mark_locked(r, it->first);
            return;
        }
    }
}

int poll_fence_fd(int fd, int64_t timeout_ns, int watch_fd) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = timeout_ns < 0 ? Clock::time_point::max()
                                         : Clock::now() + std::chrono::nanoseconds(timeout_ns);
    for (;;) {
        pollfd p[2] = {{fd, POLLIN, 0}, {watch_fd, POLLRDHUP, 0}};
        int ms = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            ms = left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
        }
        const int n = ::poll(p, watch_fd >= 0 ? 2 : 1, ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (p[0].revents & POLLIN) return 0;
        if (p[0].revents & (POLLERR | POLLNVAL)) return -EIO;
        if (watch_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return -EPIPE;
        if (n == 0 && Clock::now() >= deadline) return -ETIMEDOUT;
    }
}

} // namespace fdnc
