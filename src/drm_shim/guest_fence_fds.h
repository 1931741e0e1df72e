// FenceFdSignaller: out-fence fds for the guest backend (MSM_SUBMIT_FENCE_FD_OUT). The kernel
// returns a sync_file; what a driver does with one is poll it for POLLIN or hand it on. An eventfd
// written once the submit retired gives the same: readable then, and for good.
//
// One thread, started with the first fence fd, waits for the oldest pending fence (a bounded wait,
// so fences of other pipes are looked at too) and signals every pending fd whose fence retired.
// A host that is gone signals everything: a waiter must not hang on a context that will never
// answer (the driver learns of the loss from the next submit or wait).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

namespace fdnc {
class Device;
}

namespace fdnc::shim {

class FenceFdSignaller {
public:
    explicit FenceFdSignaller(Device& dev) : dev_(dev) {}
    ~FenceFdSignaller(); // stops the thread; closes the fds it still holds
    FenceFdSignaller(const FenceFdSignaller&) = delete;
    FenceFdSignaller& operator=(const FenceFdSignaller&) = delete;

    // A new eventfd (the caller owns it) that becomes readable when seqno `seqno` of timeline
    // `slot` retired. 0 or -errno.
    int create(uint32_t slot, uint32_t seqno, int* fd);
    size_t pending();

private:
    struct Pending {
        uint32_t slot;
        uint32_t seqno;
        int fd; // our dup, written and closed when the fence retired
    };
    void run();
    bool retired(const Pending& p);

    Device& dev_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Pending> pending_;
    bool stop_ = false;
    std::thread thread_;
};

} // namespace fdnc::shim
