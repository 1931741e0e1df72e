// SpinMutex: a lock for critical sections of a few hundred nanoseconds that two threads on
// different CPUs take in turn (the in-process link's client and host halves). A contended
// std::mutex puts the waiter to sleep in the kernel and makes the holder's unlock a futex wake:
// on another vCPU that is an IPI, a VM exit here, 5-30 us on each side. Spinning costs the waiter
// the holder's few hundred nanoseconds instead; it yields the CPU after a while so a preempted
// holder on the same CPU can finish. BasicLockable: use std::condition_variable_any with it.
#pragma once

#include <sched.h>

#include <atomic>

namespace fdnc {

class SpinMutex {
public:
    void lock() noexcept {
        unsigned spins = 0;
        while (locked_.exchange(true, std::memory_order_acquire)) {
            while (locked_.load(std::memory_order_relaxed)) { // read-only spin: no cache-line ping-pong
                if (++spins < kSpinsBeforeYield) relax();
                else sched_yield();
            }
        }
    }
    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    static constexpr unsigned kSpinsBeforeYield = 1000; // ~10-40 us of pause instructions
    static void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }
    std::atomic<bool> locked_{false};
};

} // namespace fdnc
