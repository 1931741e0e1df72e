#include "guest_fence_fds.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fd_bo/device.h"

namespace fdnc::shim {

namespace {

// How long the thread waits on one fence before it looks at the others again.
constexpr int64_t kFenceSliceNs = 2'000'000;

void signal_and_close(int fd) {
    const uint64_t one = 1;
    ssize_t n;
    do {
        n = ::write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    ::close(fd);
}

} // namespace

FenceFdSignaller::~FenceFdSignaller() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
    for (const Pending& p : pending_)
        ::close(p.fd);
}

int FenceFdSignaller::create(uint32_t slot, uint32_t seqno, int* fd) {
    if (!dev_.timeline(slot))
        return -EINVAL;
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    int ours = ::fcntl(efd, F_DUPFD_CLOEXEC, 0);
    if (ours < 0) {
        int e = -errno;
        ::close(efd);
        return e;
    }
    const Pending p{slot, seqno, ours};
    if (retired(p)) {
        signal_and_close(ours);
    } else {
        std::lock_guard lk(mu_);
        pending_.push_back(p);
        if (!thread_.joinable())
            thread_ = std::thread([this] { run(); });
    }
    cv_.notify_all();
    *fd = efd;
    return 0;
}

size_t FenceFdSignaller::pending() {
    std::lock_guard lk(mu_);
    return pending_.size();
}

bool FenceFdSignaller::retired(const Pending& p) {
    FenceTimeline* tl = dev_.timeline(p.slot);
    if (tl->is_retired(p.seqno))
        return true;
    tl->poll(dev_.transport());
    return tl->is_retired(p.seqno);
}

void FenceFdSignaller::run() {
    std::unique_lock lk(mu_);
    for (;;) {
        cv_.wait(lk, [this] { return stop_ || !pending_.empty(); });
        if (stop_)
            return;
        const Pending oldest = pending_.front();
        lk.unlock();
        int r = dev_.timeline(oldest.slot)->wait(dev_.transport(), oldest.seqno, kFenceSliceNs, nullptr);
        const bool host_gone = r < 0 && r != -ETIMEDOUT;
        lk.lock();
        std::deque<Pending> still;
        std::vector<int> ready;
        for (const Pending& p : pending_) {
            if (host_gone || retired(p))
                ready.push_back(p.fd);
            else
                still.push_back(p);
        }
        pending_.swap(still);
        lk.unlock();
        for (int fd : ready)
            signal_and_close(fd);
        lk.lock();
    }
}

} // namespace fdnc::shim
