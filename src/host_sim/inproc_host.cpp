#include "host_sim/inproc_host.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "host_sim/msm_renderer.h"
#include "util/ring_queue.h"
#include "util/spin_mutex.h"
#include "virtio_proto/transport.h"

namespace fdnc::host {

namespace {

using Clock = InprocClock;

std::atomic<uint32_t> g_next_ctx_id{1};

class InprocHost;

// One per Host: routes the Host's single fence callback to the link owning ctx_id, and hands out
// res_ids unique across the Host's contexts (like a virtio-gpu device does).
struct HostRouter {
    std::mutex mu;
    std::unordered_map<uint32_t, InprocHost*> ctxs;
    std::map<InprocFileKey, uint32_t> exported; // fds this Host exported -> res_id (import dedup)
    std::atomic<uint32_t> next_res_id{1};
};

std::mutex g_routers_mu;
std::map<Host*, std::weak_ptr<HostRouter>> g_routers;

class InprocHost final : public InprocHostLink {
public:
    InprocHost(Host* h, std::unique_ptr<Host> own, InprocConfig c) : host_(h), owned_(std::move(own)), cfg_(c) {
        ctx_ = cfg_.ctx_id ? cfg_.ctx_id : g_next_ctx_id.fetch_add(1);
        half_rtt_ = std::chrono::nanoseconds(uint64_t{cfg_.rtt_us} * 1000 / 2);
        poll_ = std::chrono::microseconds(cfg_.poll_us);
        attach_router();
        thread_ = std::thread([this] {
            inproc_precise_timers();
            host_loop();
        });
    }

    ~InprocHost() override {
        shutdown(false);
        std::lock_guard rg(router_->mu);
        router_->ctxs.erase(ctx_);
    }

    void attach(InprocGuest* guest) override {
        std::lock_guard rg(router_->mu); // the router reads guest_ under its lock
        guest_ = guest;
    }

    const InprocConfig& config() const override { return cfg_; }
    uint32_t ctx_id() const override { return ctx_; }
    Host& host() override { return *host_; }

    // Lock-free: the client asks before every request, and the host thread holds mu_ often.
    bool gone() const override {
        return dead_.load(std::memory_order_acquire) || stopping_.load(std::memory_order_acquire);
    }

    int post(InprocItem item, std::vector<uint8_t>* spare) override {
        bool wake;
        {
            std::lock_guard g(mu_);
            if (dead_ || stopping_) {
                if (item.in_fence_fd >= 0) ::close(item.in_fence_fd);
                return -EPIPE;
            }
            Entry e;
            e.item = std::move(item);
            wake = push(std::move(e));
            if (spare && !spent_cmds_.empty()) {
                *spare = std::move(spent_cmds_.back());
                spent_cmds_.pop_back();
            }
        }
        if (wake) { // outside the lock: the woken thread does not block on it
            host_cv_.notify_one();
            note_host_wake();
        }
        return 0;
    }

    int call(std::function<int(Host&)> fn, bool arms_stall) override {
        auto c = std::make_shared<Call>();
        c->fn = std::move(fn);
        c->arms_stall = arms_stall;
        std::unique_lock lk(mu_);
        if (dead_ || stopping_) return -EPIPE;
        Entry e;
        e.call = c;
        if (push(std::move(e))) { // under the lock: we wait on cv_ right after
            host_cv_.notify_one();
            note_host_wake();
        }
        inproc_precise_timers();
        for (;;) {
            if (c->done && Clock::now() >= c->visible_at) return c->result;
            if (dead_) return -EPIPE;
            if (c->done) inproc_wait_until(cv_, lk, c->visible_at);
            else cv_.wait(lk);
        }
    }

    uint32_t new_res_id() override { return router_->next_res_id.fetch_add(1); }

    void note_exported(InprocFileKey key, uint32_t res_id) override {
        std::lock_guard rg(router_->mu);
        router_->exported[key] = res_id;
    }

    uint32_t exported_res_id(InprocFileKey key) override {
        std::lock_guard rg(router_->mu);
        auto it = router_->exported.find(key);
        return it == router_->exported.end() ? 0 : it->second;
    }

    void shutdown(bool destroy_context) override {
        {
            std::lock_guard g(mu_);
            stopping_ = true;
            host_cv_.notify_all();
        }
        if (thread_.joinable()) thread_.join();
        if (destroy_context) host_->context_destroy(ctx_); // host thread is gone: no concurrent call from us
    }

    InprocLinkStats stats() const override {
        std::lock_guard g(mu_);
        return st_;
    }

    // From the router (the Host's fence callback, any thread) or the host thread. On the host
    // thread (a ring-0 fence, retired as its execbuf runs) the retire was produced on the delay
    // line's clock: lag_ earlier than the wall clock says.
    void retired(uint32_t ring, uint64_t point) {
        const auto lag = t_running == this ? lag_ : std::chrono::nanoseconds{0};
        if (guest_) guest_->on_retire(ring, point, Clock::now() - lag + half_rtt_);
    }

private:
    struct Call {
        std::function<int(Host&)> fn;
        bool done = false;
        int result = 0;
        Clock::time_point visible_at; // when the guest may see the answer
        bool arms_stall = false;      // InprocConfig::stall starts after this call (the shmem map)
    };
    struct Entry {
        InprocItem item;
        std::shared_ptr<Call> call; // set: a round trip, item unused
        Clock::time_point visible_at; // when the host may see it
    };

    void attach_router() {
        std::lock_guard g(g_routers_mu);
        std::erase_if(g_routers, [](const auto& kv) { return kv.second.expired(); }); // Hosts gone
        router_ = g_routers[host_].lock();
        if (!router_) {
            router_ = std::make_shared<HostRouter>();
            g_routers[host_] = router_;
            // The callback keeps the router alive as long as the Host may call it.
            host_->set_fence_callback([r = router_](uint32_t ctx_id, uint32_t ring, uint64_t point) {
                std::lock_guard rg(r->mu);
                auto it = r->ctxs.find(ctx_id);
                if (it != r->ctxs.end()) it->second->retired(ring, point);
            });
        }
        std::lock_guard rg(router_->mu);
        router_->ctxs[ctx_] = this;
    }

    // The link whose item the current thread is running (the host thread, inside execute*).
    static thread_local const InprocHost* t_running;

    // Caller holds mu_. True when the host thread sleeps with nothing to do and must be woken
    // (the caller notifies host_cv_). Otherwise it is running an item, polling, or waiting for the
    // head's deadline, which comes before this item's (deadlines only grow): waking it would be a
    // futex wake and, from another CPU, an IPI per request for nothing (virtio's notification
    // suppression, VRING_USED_F_NO_NOTIFY, spares a busy host the same way).
    bool push(Entry e) {
        e.visible_at = Clock::now() + half_rtt_;
        queue_.push_back(std::move(e));
        queued_.store(queue_.size(), std::memory_order_release);
        ++st_.items_sent;
        const bool wake = host_idle_;
        host_idle_ = false; // one wake is enough for any number of posts before the host runs
        return wake;
    }

    // Host thread, mu_ held and released while polling: watches the queue for up to poll_us
    // before the thread sleeps (QEMU's iothreads poll the same way, poll-max-ns). True if an item
    // came or the link is stopping.
    bool poll_for_work(std::unique_lock<SpinMutex>& lk) {
        if (poll_.count() == 0) return false;
        lk.unlock();
        const auto until = Clock::now() + poll_;
        while (queued_.load(std::memory_order_acquire) == 0 && !stopping_.load(std::memory_order_relaxed) &&
               Clock::now() < until)
            sched_yield(); // lets a runnable thread on this CPU go first
        lk.lock();
        return !queue_.empty() || stopping_;
    }

    void host_loop() {
        std::unique_lock lk(mu_);
        for (;;) {
            if (stopping_) break;
            if (queue_.empty() || stalled_) { // InprocConfig::stall: items pile up, nothing runs
                if (!stalled_ && poll_for_work(lk)) continue;
                host_idle_ = true; // under mu_: a push after this line sees it and notifies
                host_cv_.wait(lk);
                host_idle_ = false;
                continue;
            }
            if (const auto due = queue_.front().visible_at; Clock::now() < due) {
                // A copy: wait_until keeps its argument across the unlock, and a post meanwhile
                // may grow the RingQueue and move the element it refers to.
                host_cv_.wait_until(lk, due);
                continue;
            }
            Entry e = queue_.pop_front();
            queued_.store(queue_.size(), std::memory_order_release);
            lk.unlock();
            // The delay line's clock: the item is processed at its deadline, or when the item
            // before it was done if that is later (the host runs one at a time, as a real one
            // does). The host thread's own wake-up lateness is not the link's latency: an answer
            // becomes visible rtt/2 after it was produced on this clock, and never before it
            // really was produced (the guest also waits for it to exist).
            const auto start = Clock::now();
            lag_ = start - std::max(e.visible_at, std::min(line_end_, start));
            t_running = this;
            const bool ok = e.call ? execute_call(*e.call) : execute(e.item);
            t_running = nullptr;
            line_end_ = Clock::now() - lag_;
            lk.lock();
            if (e.item.cmd.capacity() != 0 && e.item.cmd.capacity() <= kMaxSpentCmdCapacity &&
                spent_cmds_.size() < kMaxSpentCmds) {
                e.item.cmd.clear();
                spent_cmds_.push_back(std::move(e.item.cmd));
            }
            ++st_.items_executed;
            if (!ok) ++st_.host_errors;
        }
        queue_.for_each([](Entry& e) {
            if (e.item.in_fence_fd >= 0) ::close(e.item.in_fence_fd);
        });
        queue_.clear();
        queued_.store(0, std::memory_order_release);
        dead_ = true;
        cv_.notify_all();
        lk.unlock();
        std::lock_guard rg(router_->mu);
        if (guest_) guest_->on_host_gone();
    }

    // Runs one item on the host thread, without mu_. False when the host reported an error.
    bool execute(InprocItem& it) {
        switch (it.kind) {
        case InprocItem::Kind::Execbuf: {
            if (it.in_fence_fd >= 0) {
                // The host waits for the in-fence first; a sync_file polls readable once signaled.
                pollfd p{it.in_fence_fd, POLLIN, 0};
                while (!stopping_.load() && ::poll(&p, 1, 10) == 0) {
                }
                ::close(it.in_fence_fd);
            }
            bool ok = it.cmd.empty() || host_->submit_cmd(ctx_, it.cmd) == 0; // H6: errors stay host-side
            if (it.point) {
                if (host_->context_create_fence(ctx_, it.ring, it.point) != 0) {
                    ok = false;
                    retired(it.ring, it.point); // never leave a guest waiting on a fence that cannot come
                }
            }
            return ok;
        }
        case InprocItem::Kind::CreateBlob: {
            bool ok = it.cmd.empty() || host_->submit_cmd(ctx_, it.cmd) == 0; // §3.5: cmd runs first
            ok = host_->resource_create_blob(ctx_, it.res_id, it.blob_mem, it.blob_flags, it.size, it.blob_id) == 0 && ok;
            return ok;
        }
        case InprocItem::Kind::Unref: host_->resource_unref(ctx_, it.res_id); return true;
        }
        return false;
    }

    bool execute_call(Call& c) {
        const int r = c.fn(*host_);
        std::lock_guard g(mu_);
        c.result = r;
        c.done = true;
        c.visible_at = Clock::now() - lag_ + half_rtt_;
        if (cfg_.stall && c.arms_stall) stalled_ = true;
        cv_.notify_all();
        return r >= 0;
    }

    Host* host_ = nullptr;
    std::unique_ptr<Host> owned_;
    InprocConfig cfg_;
    uint32_t ctx_ = 0;
    std::chrono::nanoseconds half_rtt_{0};
    // Host thread only: how far the running item started after its place on the delay line, and
    // when the item before it ended there.
    std::chrono::nanoseconds lag_{0};
    Clock::time_point line_end_{};
    std::shared_ptr<HostRouter> router_;
    InprocGuest* guest_ = nullptr; // under router_->mu

    // Client and host thread take it in turn for a few hundred ns: a spin lock, so neither ever
    // sleeps on it or has to wake the other when it lets go (util/spin_mutex.h).
    mutable SpinMutex mu_;
    std::condition_variable_any host_cv_; // host thread: new item or stop
    std::condition_variable_any cv_;      // round trips: a result, or the host's end
    RingQueue<Entry> queue_;
    // Spent items' cmd buffers, handed back to the client by post() for its next item: a buffer
    // allocated on the client's thread and freed on this one would take the client's malloc arena
    // lock from here, and a client allocating meanwhile waits for it (a 7-10 us stall of a
    // bo_new that flushed ~1 KiB of ccmds, bench/README.md "bo_new tail").
    std::vector<std::vector<uint8_t>> spent_cmds_;
    static constexpr size_t kMaxSpentCmds = 16;
    static constexpr size_t kMaxSpentCmdCapacity = 64 * 1024;
    std::atomic<size_t> queued_{0};     // queue_.size(), for the polling host thread without mu_
    bool host_idle_ = false;            // the host thread sleeps on host_cv_ with nothing to do
    std::chrono::microseconds poll_{0}; // InprocConfig::poll_us
    // Written under mu_, read anywhere (gone(), the polls for work and for an in-fence).
    std::atomic<bool> stopping_{false};
    std::atomic<bool> dead_{false};
    bool stalled_ = false; // InprocConfig::stall, after the first round trip
    InprocLinkStats st_;
    std::thread thread_;
};

thread_local const InprocHost* InprocHost::t_running = nullptr;

} // namespace

std::unique_ptr<InprocHostLink> make_inproc_host(Host& host, InprocConfig cfg) {
    return std::make_unique<InprocHost>(&host, nullptr, cfg);
}

std::unique_ptr<InprocHostLink> make_inproc_host(std::unique_ptr<Host> host, InprocConfig cfg) {
    if (!host) throw std::invalid_argument("make_inproc_host: null Host");
    Host* h = host.get();
    return std::make_unique<InprocHost>(h, std::move(host), cfg);
}

HostSimConfig host_sim_config(const InprocConfig& in) {
    HostSimConfig cfg;
    cfg.kernel.va_start = in.va_start;
    cfg.kernel.va_size = in.va_size;
    if (in.gpu_id) cfg.kernel.gpu.gpu_id = in.gpu_id;
    if (in.chip_id) cfg.kernel.gpu.chip_id = in.chip_id;
    cfg.kernel.gpu_exec_us = in.gpu_us;
    if (in.oom_after) {
        // The renderer installs the hook after its own probe allocation (§4.4 step 5), so the
        // count is of client GEM_NEWs only.
        auto count = std::make_shared<std::atomic<uint64_t>>(0);
        const uint64_t limit = in.oom_after;
        cfg.kernel.fail_hook = [count, limit](KernelOp op, FileId) {
            if (op != KernelOp::GemNew) return 0;
            return count->fetch_add(1) < limit ? 0 : -ENOMEM;
        };
    }
    return cfg;
}

std::unique_ptr<InprocHostLink> make_inproc_msm_host(const InprocConfig& cfg, std::string*) {
    return make_inproc_host(make_msm_host(host_sim_config(cfg)), cfg);
}

void register_inproc_msm_host() {
    register_inproc_host([](const InprocConfig& cfg, std::string* error) { return make_inproc_msm_host(cfg, error); });
}

} // namespace fdnc::host
