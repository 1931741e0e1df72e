#include "transports/inproc_transport.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "util/ring_queue.h"
#include "util/spin_mutex.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

namespace {

using Clock = InprocClock;

bool file_key(int fd, InprocFileKey* key) {
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    *key = {st.st_dev, st.st_ino};
    return true;
}

} // namespace

struct InprocTransport::Impl final : InprocGuest {
    struct Ring {
        uint64_t assigned = 0; // last point handed out
        uint64_t visible = 0;  // every point <= this is signaled as the guest sees it
        // Retired, not visible yet. Filled on the host thread, drained on the client's: a
        // RingQueue keeps the memory where it was allocated (util/ring_queue.h).
        RingQueue<std::pair<uint64_t, Clock::time_point>> retiring;
    };
    struct Blob {
        uint32_t res_id = 0;
        uint64_t size = 0;
        void* map = nullptr;
        uint64_t map_size = 0;
        bool shmem = false; // blob_id 0: the shared page (B7)
        bool have_key = false;
        InprocFileKey key{};
    };

    InprocHostLink* link = nullptr;
    // Taken by the client and by the host thread's retires (on_retire), briefly: a spin lock, so
    // neither sleeps on it or has to wake the other (util/spin_mutex.h).
    mutable SpinMutex mu;
    std::condition_variable_any cv; // waiters: a retire became visible, or the host is gone
    bool context_created = false;
    std::vector<Ring> rings;
    std::unordered_map<uint32_t, Blob> blobs;
    std::map<InprocFileKey, uint32_t> handle_by_file;
    uint32_t next_handle = 1;
    std::vector<uint8_t> spare_cmd; // the next item's cmd buffer (InprocHostLink::post's spare)
    uint64_t host_waits = 0;

    // InprocGuest: a fence retired on the host; visible to the guest from visible_at.
    void on_retire(uint32_t ring, uint64_t point, Clock::time_point visible_at) override {
        {
            std::lock_guard g(mu);
            if (ring >= rings.size()) return;
            rings[ring].retiring.push_back({point, visible_at});
            refresh(rings[ring], Clock::now()); // keeps the list short when nobody waits on this ring
        }
        cv.notify_all(); // outside the lock: a woken waiter does not block on it again at once
    }

    void on_host_gone() override {
        std::lock_guard g(mu);
        cv.notify_all();
    }

    static void refresh(Ring& r, Clock::time_point now) {
        while (!r.retiring.empty() && r.retiring.front().second <= now) {
            r.visible = std::max(r.visible, r.retiring.front().first);
            r.retiring.pop_front();
        }
    }

    // A round trip to the host; counted as a host wait.
    int call(std::function<int(Host&)> fn, bool arms_stall = false) {
        if (link->gone()) return -EPIPE;
        {
            std::lock_guard g(mu);
            ++host_waits;
        }
        note_host_block("round trip");
        return link->call(std::move(fn), arms_stall);
    }
};

InprocTransport::InprocTransport(std::unique_ptr<InprocHostLink> link)
    : impl_(std::make_unique<Impl>()), link_(std::move(link)) {
    if (!link_) throw std::invalid_argument("InprocTransport: null host link");
    impl_->link = link_.get();
    link_->attach(impl_.get());
}

InprocTransport::~InprocTransport() {
    close();
    link_.reset(); // detaches from the Host's router before the guest state goes
}

TransportInfo InprocTransport::info() const {
    TransportInfo ti{};
    ti.name = "inproc";
    ti.detail = "ctx " + std::to_string(link_->ctx_id()) + ", rtt " + std::to_string(link_->config().rtt_us) + " us";
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
        if (link_->gone()) return -EPIPE;
        if (impl_->context_created) return -EEXIST;
    }
    const uint32_t ctx = link_->ctx_id();
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
    const uint32_t res_id = link_->new_res_id();
    std::lock_guard g(m.mu);
    if (link_->gone()) return -EPIPE;
    if (!m.context_created) return -EINVAL;
    InprocItem it{};
    it.kind = InprocItem::Kind::CreateBlob;
    it.cmd = std::move(m.spare_cmd); // a buffer the host is done with (InprocHostLink::post)
    it.cmd.assign(args.cmd.begin(), args.cmd.end());
    it.res_id = res_id;
    it.blob_mem = args.blob_mem;
    it.blob_flags = args.blob_flags;
    it.size = args.size;
    it.blob_id = args.blob_id;
    if (int r = link_->post(std::move(it), &m.spare_cmd); r < 0) return r;
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
    if (link_->gone()) return -EPIPE;
    if (args.ring_idx >= m.rings.size()) return -EINVAL; // also: no context yet
    InprocItem it{};
    it.kind = InprocItem::Kind::Execbuf;
    it.cmd = std::move(m.spare_cmd);
    it.cmd.assign(args.cmd.begin(), args.cmd.end());
    it.ring = args.ring_idx;
    if (args.in_fence_fd >= 0) {
        it.in_fence_fd = fcntl(args.in_fence_fd, F_DUPFD_CLOEXEC, 0); // the caller keeps its fd
        if (it.in_fence_fd < 0) return -errno;
    }
    Impl::Ring& ring = m.rings[args.ring_idx];
    if (args.fence_out) it.point = ring.assigned + 1;
    if (int r = link_->post(std::move(it), &m.spare_cmd); r < 0) return r;
    if (args.fence_out) ++ring.assigned;
    if (out_fence) *out_fence = TransportFence{args.ring_idx, args.fence_out ? ring.assigned : 0};
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
    if (fence.ring_idx >= m.rings.size()) return link_->gone() ? -EPIPE : -EINVAL;
    Impl::Ring& r = m.rings[fence.ring_idx];
    if (fence.point > r.assigned) return -EINVAL; // never created: it would never signal
    bool counted = false;
    for (;;) {
        const auto now = Clock::now();
        m.refresh(r, now);
        if (r.visible >= fence.point) return 0;
        if (link_->gone()) return -EPIPE;
        if (now >= deadline) return -ETIMEDOUT;
        if (!counted) {
            ++m.host_waits;
            note_host_block("fence");
            inproc_precise_timers();
            counted = true;
        }
        auto wake = deadline;
        if (!r.retiring.empty()) wake = std::min(wake, r.retiring.front().second);
        if (wake == Clock::time_point::max()) m.cv.wait(lk);
        else if (wake == deadline) m.cv.wait_until(lk, wake); // a timeout needs no precision
        else inproc_wait_until(m.cv, lk, wake);
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
    const uint32_t ctx = link_->ctx_id();
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
    InprocItem item{};
    item.kind = InprocItem::Kind::Unref;
    item.res_id = res_id;
    return link_->post(std::move(item)); // -EPIPE once the host is gone
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
    const uint32_t ctx = link_->ctx_id();
    const int r = m.call([&](Host& h) { return h.resource_export_fd(ctx, res_id, &out); });
    if (r < 0) return r;
    if (out < 0) return -EINVAL;
    InprocFileKey key;
    if (file_key(out, &key)) {
        link_->note_exported(key, res_id);
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
    InprocFileKey key;
    if (!file_key(fd, &key)) return -EBADF;
    {
        std::lock_guard g(m.mu);
        if (link_->gone()) return -EPIPE;
        if (auto it = m.handle_by_file.find(key); it != m.handle_by_file.end()) {
            *handle = it->second; // dedup, like PRIME's handle table (I1)
            *size = m.blobs[it->second].size;
            return 0;
        }
        if (!m.context_created) return -EINVAL;
    }
    uint32_t res_id = link_->exported_res_id(key);
    if (!res_id) res_id = link_->new_res_id();
    uint64_t sz = 0;
    const uint32_t ctx = link_->ctx_id();
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
    bool destroy;
    {
        std::lock_guard g(impl_->mu);
        destroy = impl_->context_created;
        impl_->context_created = false;
    }
    link_->shutdown(destroy);
}

void InprocTransport::simulate_host_death() { link_->shutdown(false); }

InprocStats InprocTransport::stats() const {
    const InprocLinkStats ls = link_->stats();
    InprocStats st;
    st.items_sent = ls.items_sent;
    st.items_executed = ls.items_executed;
    st.host_errors = ls.host_errors;
    std::lock_guard g(impl_->mu);
    st.host_waits = impl_->host_waits;
    return st;
}

uint32_t InprocTransport::ctx_id() const { return link_->ctx_id(); }
const InprocConfig& InprocTransport::config() const { return link_->config(); }
Host& InprocTransport::host() { return link_->host(); }

} // namespace fdnc
