#include "inproc_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "virtgpu_uapi.h"

namespace fdnc {

namespace {

// The delay line's timed waits (an item becomes visible rtt/2 after it was sent, an answer rtt/2
// after it was produced) overshoot by the waiting thread's timer slack, 50 us by default: at a
// 200 us round trip that was ~40% of every host-mode bo_new. 1 ns of slack leaves the wake-up
// itself. Set once per thread that waits here (the host thread, and guest threads that block in a
// round trip or a fence wait; inproc is the test and benchmark transport).
void precise_timers() {
    static thread_local bool done = false;
    if (!done) {
        ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        done = true;
    }
}

using Clock = std::chrono::steady_clock;
using FileKey = std::pair<dev_t, ino_t>;

std::atomic<uint32_t> g_next_ctx_id{1};

bool file_key(int fd, FileKey* key) {
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    *key = {st.st_dev, st.st_ino};
    return true;
}

// One per Host: routes the Host's single fence callback to the transport owning ctx_id, and
// hands out res_ids unique across the Host's contexts (like a virtio-gpu device does).
struct HostRouter {
    std::mutex mu;
    std::unordered_map<uint32_t, InprocTransport::Impl*> ctxs;
    std::map<FileKey, uint32_t> exported; // fds this Host exported -> res_id (import dedup)
    std::atomic<uint32_t> next_res_id{1};
};

std::mutex g_routers_mu;
std::map<Host*, std::weak_ptr<HostRouter>> g_routers;

} // namespace

struct InprocTransport::Impl {
    struct Call {
        std::function<int(Host&)> fn;
        bool done = false;
        int result = 0;
        Clock::time_point visible_at; // when the guest may see the answer
        bool arms_stall = false;      // InprocConfig::stall starts after this call (the shmem map)
    };
    enum class Kind { Execbuf, CreateBlob, Unref, Call };
    struct Item {
        Kind kind;
        Clock::time_point visible_at; // when the host may see it
        std::vector<uint8_t> cmd;
        uint32_t ring = 0;
        uint64_t point = 0;
        int in_fence_fd = -1;
        uint32_t res_id = 0, blob_mem = 0, blob_flags = 0;
        uint64_t size = 0, blob_id = 0;
        std::shared_ptr<Call> call;
    };
    struct Ring {
        uint64_t assigned = 0; // last point handed out
        uint64_t visible = 0;  // every point <= this is signaled as the guest sees it
        std::deque<std::pair<uint64_t, Clock::time_point>> retiring; // retired, not visible yet
    };
    struct Blob {
        uint32_t res_id = 0;
        uint64_t size = 0;
        void* map = nullptr;
        uint64_t map_size = 0;
        bool shmem = false; // blob_id 0: the shared page (B7)
        bool have_key = false;
        FileKey key{};
    };

    Host* host = nullptr;
    std::unique_ptr<Host> owned;
    InprocConfig cfg;
    uint32_t ctx = 0;
    std::chrono::nanoseconds half_rtt{0};
    std::shared_ptr<HostRouter> router;

    mutable std::mutex mu;
    std::condition_variable host_cv;  // host thread: new item or stop
    std::condition_variable guest_cv; // guests: retire, call result, death
    std::deque<Item> queue;
    bool stopping = false;
    bool dead = false;
    bool stalled = false; // InprocConfig::stall, after the first round trip
    bool context_created = false;
    std::atomic<bool> stop_flag{false}; // read while polling an in-fence without the lock
    std::vector<Ring> rings;
    std::unordered_map<uint32_t, Blob> blobs;
    std::map<FileKey, uint32_t> handle_by_file;
    uint32_t next_handle = 1;
    InprocStats st;
    std::thread thread;

    Impl(Host* h, std::unique_ptr<Host> own, InprocConfig c) : host(h), owned(std::move(own)), cfg(c) {
        ctx = cfg.ctx_id ? cfg.ctx_id : g_next_ctx_id.fetch_add(1);
        half_rtt = std::chrono::nanoseconds(uint64_t{cfg.rtt_us} * 1000 / 2);
        attach_router();
        thread = std::thread([this] {
            precise_timers();
            host_loop();
        });
    }

    void attach_router() {
        std::lock_guard g(g_routers_mu);
        std::erase_if(g_routers, [](const auto& kv) { return kv.second.expired(); }); // Hosts gone
        router = g_routers[host].lock();
        if (!router) {
            router = std::make_shared<HostRouter>();
            g_routers[host] = router;
            // The callback keeps the router alive as long as the Host may call it.
            host->set_fence_callback([r = router](uint32_t ctx_id, uint32_t ring, uint64_t point) {
                std::lock_guard rg(r->mu);
                auto it = r->ctxs.find(ctx_id);
                if (it != r->ctxs.end()) it->second->on_retire(ring, point);
            });
        }
        std::lock_guard rg(router->mu);
        router->ctxs[ctx] = this;
    }

    void detach_router() {
        std::lock_guard rg(router->mu);
        router->ctxs.erase(ctx);
    }

    // Called by the Host (any thread) when a fence retires; visible to the guest rtt/2 later.
    void on_retire(uint32_t ring, uint64_t point) {
        std::lock_guard g(mu);
        if (ring >= rings.size()) return;
        const auto now = Clock::now();
        rings[ring].retiring.emplace_back(point, now + half_rtt);
        refresh(rings[ring], now); // keeps the list short when nobody waits on this ring
        guest_cv.notify_all();
    }

    void refresh(Ring& r, Clock::time_point now) {
        while (!r.retiring.empty() && r.retiring.front().second <= now) {
            r.visible = std::max(r.visible, r.retiring.front().first);
            r.retiring.pop_front();
        }
    }

    // Caller holds mu.
    void push(Item it) {
        it.visible_at = Clock::now() + half_rtt;
        queue.push_back(std::move(it));
        ++st.items_sent;
        host_cv.notify_one();
    }

    void host_loop() {
        std::unique_lock lk(mu);
        for (;;) {
            if (stopping) break;
            if (queue.empty() || stalled) { // InprocConfig::stall: items pile up, nothing runs
                host_cv.wait(lk);
                continue;
            }
            if (Clock::now() < queue.front().visible_at) {
                host_cv.wait_until(lk, queue.front().visible_at);
                continue;
            }
            Item it = std::move(queue.front());
            queue.pop_front();
            lk.unlock();
            const bool ok = execute(it);
            lk.lock();
            ++st.items_executed;
            if (!ok) ++st.host_errors;
        }
        for (Item& it : queue)
            if (it.in_fence_fd >= 0) ::close(it.in_fence_fd);
        queue.clear();
        dead = true;
        guest_cv.notify_all();
    }

    // Runs one item on the host thread, without mu. False when the host reported an error.
    bool execute(Item& it) {
        switch (it.kind) {
        case Kind::Execbuf: {
            if (it.in_fence_fd >= 0) {
                // The host waits for the in-fence first; a sync_file polls readable once signaled.
                pollfd p{it.in_fence_fd, POLLIN, 0};
                while (!stop_flag.load() && ::poll(&p, 1, 10) == 0) {
                }
                ::close(it.in_fence_fd);
            }
            bool ok = it.cmd.empty() || host->submit_cmd(ctx, it.cmd) == 0; // H6: errors stay host-side
            if (it.point) {
                if (host->context_create_fence(ctx, it.ring, it.point) != 0) {
                    ok = false;
                    on_retire(it.ring, it.point); // never leave a guest waiting on a fence that cannot come
                }
            }
            return ok;
        }
        case Kind::CreateBlob: {
            bool ok = it.cmd.empty() || host->submit_cmd(ctx, it.cmd) == 0; // §3.5: cmd runs first
            ok = host->resource_create_blob(ctx, it.res_id, it.blob_mem, it.blob_flags, it.size, it.blob_id) == 0 && ok;
            return ok;
        }
        case Kind::Unref: host->resource_unref(ctx, it.res_id); return true;
        case Kind::Call: {
            const int r = it.call->fn(*host);
            std::lock_guard g(mu);
            it.call->result = r;
            it.call->done = true;
            it.call->visible_at = Clock::now() + half_rtt;
            if (cfg.stall && it.call->arms_stall) stalled = true;
            guest_cv.notify_all();
            return r >= 0;
        }
        }
        return false;
    }

    // A round trip: the host runs fn in order with everything sent before; -EPIPE if it dies.
    int call(std::function<int(Host&)> fn, bool arms_stall = false) {
        auto c = std::make_shared<Call>();
        c->fn = std::move(fn);
        c->arms_stall = arms_stall;
        std::unique_lock lk(mu);
        if (dead || stopping) return -EPIPE;
        Item it{};
        it.kind = Kind::Call;
        it.call = c;
        push(std::move(it));
        ++st.host_waits;
        note_host_block("round trip");
        precise_timers();
        for (;;) {
            if (c->done && Clock::now() >= c->visible_at) return c->result;
            if (dead) return -EPIPE;
            if (c->done) guest_cv.wait_until(lk, c->visible_at);
            else guest_cv.wait(lk);
        }
    }

    void stop() {
        {
            std::lock_guard g(mu);
            stopping = true;
            stop_flag = true;
            host_cv.notify_all();
        }
        if (thread.joinable()) thread.join();
    }
};

InprocTransport::InprocTransport(std::unique_ptr<Host> host, InprocConfig cfg) {
    if (!host) throw std::invalid_argument("InprocTransport: null Host");
    Host* h = host.get();
    impl_ = std::make_unique<Impl>(h, std::move(host), cfg);
}

InprocTransport::InprocTransport(Host& host, InprocConfig cfg) : impl_(std::make_unique<Impl>(&host, nullptr, cfg)) {}

InprocTransport::~InprocTransport() {
    close();
    impl_->detach_router();
}

TransportInfo InprocTransport::info() const {
    TransportInfo ti{};
    ti.name = "inproc";
    ti.detail = "ctx " + std::to_string(impl_->ctx) + ", rtt " + std::to_string(impl_->cfg.rtt_us) + " us";
    ti.host_assigns_res_id = false;
    ti.host_page_size = 4096;
    return ti;
}

int InprocTransport::get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) {
    std::fill(out.begin(), out.end(), uint8_t{0}); // no memset: an empty span has a null data()
    return impl_->call([&](Host& h) { return h.get_capset(capset_id, version, out); });
}

int InprocTransport::context_init(uint32_t capset_id, uint32_t num_rings) {
    if (num_rings == 0 || num_rings > wire::kVirtgpuMaxRings) return -EINVAL; // §3.4
    {
        std::lock_guard g(impl_->mu);
        if (impl_->dead || impl_->stopping) return -EPIPE;
        if (impl_->context_created) return -EEXIST;
    }
    const uint32_t ctx = impl_->ctx;
    const int r = impl_->call([&](Host& h) { return h.context_create(ctx, capset_id, num_rings); });
    if (r == 0) {
        std::lock_guard g(impl_->mu);
        impl_->context_created = true;
        impl_->rings.resize(num_rings);
    }
    return r;
}

int InprocTransport::create_blob(const BlobCreateArgs& args, uint32_t* handle) {
    // The guest kernel's checks (§3.5): known flags, non-zero; cmd a multiple of 4.
    if (args.blob_flags == 0 || (args.blob_flags & ~wire::VIRTGPU_BLOB_FLAGS) || args.size == 0 ||
        args.cmd.size() % 4 != 0 || args.blob_mem < wire::VIRTGPU_BLOB_MEM_GUEST ||
        args.blob_mem > wire::VIRTGPU_BLOB_MEM_HOST3D_GUEST)
        return -EINVAL;
    Impl& m = *impl_;
    const uint32_t res_id = m.router->next_res_id.fetch_add(1);
    std::lock_guard g(m.mu);
    if (m.dead || m.stopping) return -EPIPE;
    if (!m.context_created) return -EINVAL;
    Impl::Item it{};
    it.kind = Impl::Kind::CreateBlob;
    it.cmd.assign(args.cmd.begin(), args.cmd.end());
    it.res_id = res_id;
    it.blob_mem = args.blob_mem;
    it.blob_flags = args.blob_flags;
    it.size = args.size;
    it.blob_id = args.blob_id;
    m.push(std::move(it));
    const uint32_t h = m.next_handle++;
    m.blobs[h] = Impl::Blob{res_id, args.size};
    m.blobs[h].shmem = args.blob_id == 0;
    *handle = h;
    return 0;
}

int InprocTransport::resource_id(uint32_t handle, uint32_t* res_id, bool* waited) {
    if (waited) *waited = false; // the guest chose it
    std::lock_guard g(impl_->mu);
    auto it = impl_->blobs.find(handle);
    if (it == impl_->blobs.end()) return -ENOENT;
    *res_id = it->second.res_id;
    return 0;
}

int InprocTransport::execbuf(const ExecbufArgs& args, TransportFence* out_fence) {
    if (args.cmd.size() % 4 != 0) return -EINVAL;
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (m.dead || m.stopping) return -EPIPE;
    if (args.ring_idx >= m.rings.size()) return -EINVAL; // also: no context yet
    Impl::Item it{};
    it.kind = Impl::Kind::Execbuf;
    it.cmd.assign(args.cmd.begin(), args.cmd.end());
    it.ring = args.ring_idx;
    if (args.in_fence_fd >= 0) {
        it.in_fence_fd = fcntl(args.in_fence_fd, F_DUPFD_CLOEXEC, 0); // the caller keeps its fd
        if (it.in_fence_fd < 0) return -errno;
    }
    if (args.fence_out) it.point = ++m.rings[args.ring_idx].assigned;
    m.push(std::move(it));
    if (out_fence) *out_fence = TransportFence{args.ring_idx, args.fence_out ? m.rings[args.ring_idx].assigned : 0};
    return 0;
}

int InprocTransport::wait_fence(TransportFence fence, int64_t timeout_ns) {
    if (!fence) return 0;
    Impl& m = *impl_;
    const auto start = Clock::now();
    // Beyond ~100 days the sum could overflow the clock: treat such timeouts as "no limit".
    const bool forever = timeout_ns < 0 || timeout_ns > int64_t{1} << 53;
    const auto deadline = forever ? Clock::time_point::max() : start + std::chrono::nanoseconds(timeout_ns);
    std::unique_lock lk(m.mu);
    if (fence.ring_idx >= m.rings.size()) return m.dead || m.stopping ? -EPIPE : -EINVAL;
    Impl::Ring& r = m.rings[fence.ring_idx];
    if (fence.point > r.assigned) return -EINVAL; // never created: it would never signal
    bool counted = false;
    for (;;) {
        const auto now = Clock::now();
        m.refresh(r, now);
        if (r.visible >= fence.point) return 0;
        if (m.dead || m.stopping) return -EPIPE;
        if (now >= deadline) return -ETIMEDOUT;
        if (!counted) {
            ++m.st.host_waits;
            note_host_block("fence");
            precise_timers();
            counted = true;
        }
        auto wake = deadline;
        if (!r.retiring.empty()) wake = std::min(wake, r.retiring.front().second);
        if (wake == Clock::time_point::max()) m.guest_cv.wait(lk);
        else m.guest_cv.wait_until(lk, wake);
    }
}

int InprocTransport::map_blob(uint32_t handle, uint64_t size, void** ptr) {
    Impl& m = *impl_;
    uint32_t res_id;
    bool shmem;
    {
        std::lock_guard g(m.mu);
        auto it = m.blobs.find(handle);
        if (it == m.blobs.end()) return -ENOENT;
        if (it->second.map) {
            if (size > it->second.map_size) return -EINVAL;
            *ptr = it->second.map;
            return 0;
        }
        res_id = it->second.res_id;
        shmem = it->second.shmem;
    }
    HostMapping hm;
    const uint32_t ctx = m.ctx;
    const int r = m.call([&](Host& h) { return h.resource_map(ctx, res_id, &hm); }, shmem);
    if (r < 0) return r;
    if (!hm.ptr || size > hm.size) return -EINVAL;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end()) return -ENOENT; // closed meanwhile
    it->second.map = hm.ptr;
    it->second.map_size = hm.size;
    *ptr = hm.ptr;
    return 0;
}

void InprocTransport::unmap_blob(uint32_t, void*, uint64_t) {
    // The host's mapping lives until the resource is unref'd (B15); nothing to undo here.
}

int InprocTransport::close_blob(uint32_t handle) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    auto it = m.blobs.find(handle);
    if (it == m.blobs.end()) return -ENOENT;
    const uint32_t res_id = it->second.res_id;
    if (it->second.have_key) m.handle_by_file.erase(it->second.key);
    m.blobs.erase(it);
    if (m.dead || m.stopping) return -EPIPE;
    Impl::Item item{};
    item.kind = Impl::Kind::Unref;
    item.res_id = res_id;
    m.push(std::move(item));
    return 0;
}

int InprocTransport::export_blob_fd(uint32_t handle, int* fd) {
    Impl& m = *impl_;
    uint32_t res_id;
    {
        std::lock_guard g(m.mu);
        auto it = m.blobs.find(handle);
        if (it == m.blobs.end()) return -ENOENT;
        res_id = it->second.res_id;
    }
    int out = -1;
    const uint32_t ctx = m.ctx;
    const int r = m.call([&](Host& h) { return h.resource_export_fd(ctx, res_id, &out); });
    if (r < 0) return r;
    if (out < 0) return -EINVAL;
    FileKey key;
    if (file_key(out, &key)) {
        {
            std::lock_guard rg(m.router->mu);
            m.router->exported[key] = res_id;
        }
        std::lock_guard g(m.mu);
        auto it = m.blobs.find(handle);
        if (it != m.blobs.end()) {
            it->second.have_key = true;
            it->second.key = key;
            m.handle_by_file[key] = handle;
        }
    }
    *fd = out;
    return 0;
}

int InprocTransport::import_blob_fd(int fd, uint32_t* handle, uint64_t* size) {
    Impl& m = *impl_;
    FileKey key;
    if (!file_key(fd, &key)) return -EBADF;
    {
        std::lock_guard g(m.mu);
        if (m.dead || m.stopping) return -EPIPE;
        if (auto it = m.handle_by_file.find(key); it != m.handle_by_file.end()) {
            *handle = it->second; // dedup, like PRIME's handle table (I1)
            *size = m.blobs[it->second].size;
            return 0;
        }
        if (!m.context_created) return -EINVAL;
    }
    uint32_t res_id = 0;
    {
        std::lock_guard rg(m.router->mu);
        if (auto it = m.router->exported.find(key); it != m.router->exported.end()) res_id = it->second;
    }
    if (!res_id) res_id = m.router->next_res_id.fetch_add(1);
    uint64_t sz = 0;
    const uint32_t ctx = m.ctx;
    const int r = m.call([&](Host& h) { return h.resource_import_fd(ctx, res_id, fd, &sz); });
    if (r < 0) return r;
    std::lock_guard g(m.mu);
    const uint32_t h = m.next_handle++;
    Impl::Blob b{res_id, sz};
    b.have_key = true;
    b.key = key;
    m.blobs[h] = b;
    m.handle_by_file[key] = h;
    *handle = h;
    *size = sz;
    return 0;
}

void InprocTransport::close() {
    Impl& m = *impl_;
    bool destroy;
    {
        std::lock_guard g(m.mu);
        destroy = m.context_created;
        m.context_created = false;
    }
    m.stop();
    if (destroy) m.host->context_destroy(m.ctx); // host thread is gone: no concurrent call from us
}

void InprocTransport::simulate_host_death() { impl_->stop(); }

InprocStats InprocTransport::stats() const {
    std::lock_guard g(impl_->mu);
    return impl_->st;
}

uint32_t InprocTransport::ctx_id() const { return impl_->ctx; }
const InprocConfig& InprocTransport::config() const { return impl_->cfg; }
Host& InprocTransport::host() { return *impl_->host; }

} // namespace fdnc
