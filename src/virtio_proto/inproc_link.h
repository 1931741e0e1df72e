// The in-process boundary: what crosses between the in-process transport's client half
// (src/transports/inproc_transport: handles, fence points, what the guest sees) and its host half
// (src/host_sim/inproc_host: the host thread, the injected latency, the context router). Both
// halves see only this header and host.h, so neither includes the other (DESIGN.md "Layers").
//
// Requests travel as InprocItems, strictly in order; a round trip is a call() run by the host
// thread in order with every item sent before it. Answers come back through InprocGuest: a fence
// retire with the time it becomes visible to the guest (rtt/2 after the host produced it), and
// the host going away.
//
// The link is found through a registry: the program that links the in-process host registers its
// factory (host_sim's inproc_host_dep does so when linked); `inproc:` URIs fail with a clear error
// where none is registered (e.g. in libfdnc, which links no host model).
#pragma once

#include <sched.h>
#include <sys/prctl.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "host.h"
#include "msm_uapi.h"

namespace fdnc {

struct InprocConfig {
    uint32_t rtt_us = 0;  // guest <-> host round trip; each direction costs rtt/2
    uint32_t gpu_us = 0;  // GPU time per submit: for the host model, carried only
    uint64_t va_start = wire::kAdrenoVmStart; // host model's address space (§1.3)
    uint64_t va_size = wire::kDefaultVaSize;
    uint32_t gpu_id = 0;   // 0 = the host model's default
    uint64_t chip_id = 0;  // 0 = the host model's default
    uint64_t oom_after = 0; // host model: allocations that succeed before -ENOMEM (0 = never)
    uint32_t ctx_id = 0;    // 0 = a fresh process-wide id
    // A host that stops: once the context's shared page is mapped, the host thread keeps taking
    // requests and never runs or answers another one (round trips then end only at close()). What
    // "never waits on the host" is proven against: a call that waits can only time out.
    bool stall = false;
    // After the host thread runs out of work it polls its queue this long before it sleeps, as
    // QEMU's iothreads do (poll-max-ns, 32 us by default). A sleeping host thread costs whoever
    // posts next a futex wake and, from another CPU, an IPI (a VM exit in a guest): a cost of this
    // in-process model, not of the guest's request, and the bo_new tail of issue 17. 0 = sleep at
    // once. Polling burns up to this much CPU per idle period (yielding to runnable threads).
    uint32_t poll_us = 32;
};

using InprocClock = std::chrono::steady_clock;

// The delay line's timed waits (an item becomes visible rtt/2 after it was sent, an answer rtt/2
// after it was produced) overshoot by the waiting thread's timer slack, 50 us by default: at a
// 200 us round trip that was ~40% of every host-mode bo_new. 1 ns of slack leaves the wake-up
// itself. Set once per thread that waits here (the host thread, and guest threads that block in a
// round trip or a fence wait; inproc is the test and benchmark transport).
inline void inproc_precise_timers() {
    static thread_local bool done = false;
    if (!done) {
        ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        done = true;
    }
}

// A guest thread that waits for an answer's visible_at sleeps until kInprocSpin before it and
// yields the CPU in a loop for the rest: a timed wake-up alone comes tens of microseconds late on a
// loaded machine (measured: p50 13 us at rtt 200, 34 us at rtt 1000; p90 ~65 us), and that lateness
// was part of every host-mode bo_new. At most kInprocSpin of spinning per wait.
inline constexpr std::chrono::microseconds kInprocSpin{80};

// Waits on cv (lk held) until `at`, the last kInprocSpin without the lock, spinning: a
// notification in that stretch is not seen until `at`, so callers re-check their state after it.
template <class Lock, class Cv>
inline void inproc_wait_until(Cv& cv, Lock& lk, InprocClock::time_point at) {
    if (at - InprocClock::now() > kInprocSpin) {
        cv.wait_until(lk, at - kInprocSpin);
        return;
    }
    lk.unlock();
    while (InprocClock::now() < at) sched_yield();
    lk.lock();
}

// One request that needs no answer. Kinds and fields as the host consumes them.
struct InprocItem {
    enum class Kind { Execbuf, CreateBlob, Unref };
    Kind kind = Kind::Execbuf;
    std::vector<uint8_t> cmd; // Execbuf: the ccmd stream; CreateBlob: ccmds run first (§3.5)
    uint32_t ring = 0;        // Execbuf
    uint64_t point = 0;       // Execbuf: fence point to create after cmd (0 = none)
    int in_fence_fd = -1;     // Execbuf: owned by the item; the host waits for it first
    uint32_t res_id = 0, blob_mem = 0, blob_flags = 0; // CreateBlob, Unref (res_id)
    uint64_t size = 0, blob_id = 0;                    // CreateBlob
};

// A file behind an fd (dev, inode): how exported blobs are recognised on import (dedup).
using InprocFileKey = std::pair<dev_t, ino_t>;

// The client half as the host half sees it. Called from any thread, never under the link's lock.
class InprocGuest {
public:
    virtual ~InprocGuest() = default;
    // Fence `point` of `ring` retired; the guest may see it from `visible_at` on.
    virtual void on_retire(uint32_t ring, uint64_t point, InprocClock::time_point visible_at) = 0;
    // The host thread ended (close() or a simulated death): wake every waiter.
    virtual void on_host_gone() = 0;
};

struct InprocLinkStats {
    uint64_t items_sent = 0;     // items and calls queued
    uint64_t items_executed = 0; // of those, run by the host thread
    uint64_t host_errors = 0;    // host calls that failed (aborted ccmd streams, failed creates)
};

// The host half as the client half sees it.
class InprocHostLink {
public:
    virtual ~InprocHostLink() = default;

    // Once, before anything else: where retires and the host's end are reported.
    virtual void attach(InprocGuest* guest) = 0;

    virtual const InprocConfig& config() const = 0;
    virtual uint32_t ctx_id() const = 0;
    virtual Host& host() = 0;

    // True once the host thread is stopping or gone; then every call is -EPIPE.
    virtual bool gone() const = 0;

    // Queues an item; never waits. -EPIPE (and the item's in-fence closed) once gone(). With
    // `spare`, an empty buffer the host is done with (a spent item's cmd, capacity kept) may be
    // moved there for the caller's next item: memory stays on the thread that allocated it.
    virtual int post(InprocItem item, std::vector<uint8_t>* spare = nullptr) = 0;

    // A round trip: the host runs fn in order with everything posted before; the answer is
    // visible rtt/2 after it ran. -EPIPE if the host goes away first. arms_stall: the call that
    // maps the shared page (InprocConfig::stall starts after it).
    virtual int call(std::function<int(Host&)> fn, bool arms_stall = false) = 0;

    // res_ids are unique across every context of one Host (like a virtio-gpu device's).
    virtual uint32_t new_res_id() = 0;
    // Exported files of this Host -> their res_id, so an import in another context finds it.
    virtual void note_exported(InprocFileKey key, uint32_t res_id) = 0;
    virtual uint32_t exported_res_id(InprocFileKey key) = 0; // 0 if unknown

    // Stops the host thread (queued items are dropped); with destroy_context the host context is
    // destroyed afterwards. Idempotent.
    virtual void shutdown(bool destroy_context) = 0;

    virtual InprocLinkStats stats() const = 0;
};

// The registry: a program that links an in-process host registers how to make one.
using InprocHostFactory =
    std::function<std::unique_ptr<InprocHostLink>(const InprocConfig& cfg, std::string* error)>;
void register_inproc_host(InprocHostFactory factory);
// The registered factory, or an empty function when this program links no in-process host.
InprocHostFactory registered_inproc_host();

} // namespace fdnc
