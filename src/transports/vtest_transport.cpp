#include "transports/vtest_transport.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>

#include "transports/vtest_stream.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc {

using namespace vtest_client;

std::unique_ptr<VtestTransport> VtestTransport::connect(const VtestOptions& opts, std::string* error,
                                                        VtestProbe* probe) {
    auto impl = std::make_unique<Impl>();
    impl->opts = opts;
    if (impl->opts.socket_path.empty()) impl->opts.socket_path = vtest::default_socket_path();
    if (impl->opts.io_timeout_ms <= 0) impl->opts.io_timeout_ms = 5000;
    impl->reader_kick = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (impl->reader_kick < 0) {
        if (error) *error = "eventfd: " + errno_text(-errno);
        return nullptr;
    }
    const int r = impl->connect_and_negotiate(probe);
    if (r < 0) {
        if (error) *error = impl->why;
        if (probe) probe->error = impl->why;
        return nullptr;
    }
    return std::unique_ptr<VtestTransport>(new VtestTransport(std::move(impl)));
}

VtestTransport::VtestTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

VtestTransport::~VtestTransport() { close(); }

TransportInfo VtestTransport::info() const {
    TransportInfo ti;
    ti.name = "vtest";
    ti.detail = impl_->opts.socket_path;
    ti.host_assigns_res_id = true;
    ti.host_page_size = kPageSize;
    ti.ring0_fences = false; // §12.3: the real server never answers a ring-0 out-fence
    return ti;
}

uint32_t VtestTransport::protocol_version() const { return impl_->version; }

std::string VtestTransport::last_error() const {
    std::lock_guard g(impl_->mu);
    return impl_->why;
}

uint64_t VtestTransport::stall_kicks() const {
    std::lock_guard g(impl_->mu);
    return impl_->kicks;
}

size_t VtestTransport::pending_replies() const {
    std::lock_guard g(impl_->mu);
    return impl_->replies.size();
}

int VtestTransport::get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (m.dead) return -EPIPE;
    const uint32_t p[2] = {capset_id, version};
    if (int r = m.send_msg(vtest::VCMD_GET_CAPSET, p, "GET_CAPSET"); r < 0) return r;
    if (int r = m.drain_all(); r < 0) return r;
    uint32_t hdr[2];
    if (int r = m.read(hdr, sizeof hdr, "GET_CAPSET"); r < 0) return r;
    if (hdr[1] != vtest::VCMD_GET_CAPSET || hdr[0] == 0 || hdr[0] > kMaxCapsetDwords)
        return m.fail(-EPROTO, "unexpected GET_CAPSET reply");
    std::vector<uint32_t> body(hdr[0]);
    if (int r = m.read(body.data(), body.size() * 4, "GET_CAPSET"); r < 0) return r;
    std::fill(out.begin(), out.end(), 0);
    if (body[0] == 0) return -ENOENT; // §8.3: {valid = 0}
    const size_t size = (body.size() - 1) * 4;
    std::copy_n(reinterpret_cast<const uint8_t*>(body.data() + 1), std::min(size, out.size()), out.begin());
    return static_cast<int>(size);
}

int VtestTransport::context_init(uint32_t capset_id, uint32_t num_rings) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (m.dead) return -EPIPE;
    if (m.ctx_inited) return -EEXIST;
    if (capset_id == 0 || num_rings == 0 || num_rings > vtest::kMaxRings) return -EINVAL;
    const uint32_t p[1] = {capset_id};
    if (int r = m.send_msg(vtest::VCMD_CONTEXT_INIT, p, "CONTEXT_INIT"); r < 0) return r;
    m.ctx_inited = true;
    m.num_rings = num_rings;
    m.timelines.reset(num_rings);
    return 0;
}

int VtestTransport::create_blob(const BlobCreateArgs& args, uint32_t* handle) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (m.dead) return -EPIPE;
    if (!m.ctx_inited) return -EINVAL;
    if (args.size == 0 || args.cmd.size() % 4 != 0) return -EINVAL;
    if (args.blob_mem != wire::VIRTGPU_BLOB_MEM_HOST3D && args.blob_mem != wire::VIRTGPU_BLOB_MEM_HOST3D_GUEST)
        return -EINVAL;
    if (args.blob_flags & ~wire::VIRTGPU_BLOB_FLAGS) return -EINVAL;
    if (int r = m.bound_pending(); r < 0) return r;
    // V8: the tunnelled ccmd goes first as its own ring-0 batch (the host runs it before the blob
    // lookup, like RESOURCE_CREATE_BLOB.cmd on virtio-gpu, §3.5). Both messages go in one write:
    // a socket's buffer is charged per write, not per byte, so a stopped server takes about
    // twice as many creates before a write would block.
    std::vector<uint32_t> msg;
    if (!args.cmd.empty()) msg = Impl::encode_submit(args.cmd, vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX, 0);
    // V8: MAPPABLE forced and SHAREABLE cleared so the server can always hand back an fd.
    const uint32_t flags = (args.blob_flags | vtest::VCMD_BLOB_FLAG_MAPPABLE) & ~vtest::VCMD_BLOB_FLAG_SHAREABLE;
    const uint64_t size = (args.size + kPageSize - 1) & ~uint64_t(kPageSize - 1);
    const uint32_t p[vtest::kBlobCreateSize] = {args.blob_mem,
                                                flags,
                                                static_cast<uint32_t>(size),
                                                static_cast<uint32_t>(size >> 32),
                                                static_cast<uint32_t>(args.blob_id),
                                                static_cast<uint32_t>(args.blob_id >> 32)};
    msg.insert(msg.end(), {vtest::kBlobCreateSize, vtest::VCMD_RESOURCE_CREATE_BLOB});
    msg.insert(msg.end(), std::begin(p), std::end(p));
    if (int r = m.send(msg.data(), msg.size() * 4, "RESOURCE_CREATE_BLOB"); r < 0) return r;
    const uint32_t h = m.new_handle();
    Impl::Entry& e = m.entries[h - 1];
    e.pending = true;
    e.size = size;
    m.replies.push_back({Impl::ReplyKind::Blob, h, 0, 0});
    *handle = h;
    return 0;
}

int VtestTransport::resource_id(uint32_t handle, uint32_t* res_id, bool* waited) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (waited) *waited = false;
    Impl::Entry* e = m.entry(handle);
    if (!e || e->close_requested) return -ENOENT;
    if (e->pending) {
        if (m.dead) return -EPIPE;
        // Reading replies that already arrived is not a wait; the stream notes the ones it
        // blocked for (read_one_reply), and only those make this call a host wait.
        const uint64_t blocks = host_blocks_on_this_thread();
        const int r = m.drain_until([&] { return !m.entries[handle - 1].pending; });
        if (waited) *waited = host_blocks_on_this_thread() != blocks;
        if (r < 0) return r;
        e = &m.entries[handle - 1];
    }
    *res_id = e->res_id;
    return 0;
}

int VtestTransport::execbuf(const ExecbufArgs& args, TransportFence* out_fence) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (out_fence) *out_fence = {};
    if (m.dead) return -EPIPE;
    if (!m.ctx_inited || args.ring_idx >= m.num_rings || args.cmd.size() % 4 != 0) return -EINVAL;
    // §12.3: a ring-0 out-fence is never answered by the real server; reading for it would
    // block the stream, so it is refused before anything is sent (info().ring0_fences).
    if (args.fence_out && args.ring_idx == 0) return -EINVAL;
    uint32_t flags = vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX;
    if (args.in_fence_fd >= 0) flags |= vtest::VCMD_SUBMIT_CMD2_FLAG_IN_FENCE_FD;
    if (args.fence_out) {
        flags |= vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD;
        m.timelines.reap(args.ring_idx);
        if (int r = m.bound_pending(); r < 0) return r;
    }
    if (int r = m.send_submit(args.cmd, flags, args.ring_idx); r < 0) return r;
    if (args.in_fence_fd >= 0)
        if (int r = m.send_fd(args.in_fence_fd, "SUBMIT_CMD2 in-fence"); r < 0) return r;
    if (args.fence_out) {
        const uint64_t point = m.timelines.reserve(args.ring_idx);
        m.replies.push_back({Impl::ReplyKind::Fence, 0, args.ring_idx, point});
        if (out_fence) *out_fence = {args.ring_idx, point};
    }
    return 0;
}

int VtestTransport::wait_fence(TransportFence fence, int64_t timeout_ns) {
    if (!fence) return 0;
    Impl& m = *impl_;
    const auto start = Clock::now();
    const auto deadline = timeout_ns < 0 ? Clock::time_point::max() : start + std::chrono::nanoseconds(timeout_ns);
    int fd = -1;
    int sock;
    for (;;) {
        std::unique_lock g(m.mu);
        const FenceLookup l = m.timelines.lookup(fence.ring_idx, fence.point, &fd);
        if (l == FenceLookup::Signaled) return 0;
        if (m.dead) return -EPIPE;
        if (l == FenceLookup::Unknown) return -EINVAL;
        sock = m.sock;
        if (l == FenceLookup::Pollable) break;
        // Pending: the fd is behind earlier replies. Waiting for it to arrive is bounded by the
        // caller's deadline and is not fatal: fdnc-hostsim answers an out-fence only once the
        // batch's in-fence signaled. The lock is dropped meanwhile.
        if (m.replies.empty()) return m.fail(-EPROTO, "fence reply missing");
        if (m.reader_active) { // another waiter watches the socket and wakes us after each reply
            note_host_block("vtest fence reply");
            if (deadline == Clock::time_point::max())
                m.replies_cv.wait(g);
            else if (m.replies_cv.wait_until(g, deadline) == std::cv_status::timeout)
                return -ETIMEDOUT;
            continue;
        }
        pollfd ready{sock, POLLIN, 0};
        if (::poll(&ready, 1, 0) == 1) {
            if (int r = m.read_one_reply(); r < 0) return r;
            continue;
        }
        int ms = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return -ETIMEDOUT;
            ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
        }
        note_host_block("vtest fence reply");
        m.reader_active = true;
        uint64_t drained;
        while (::read(m.reader_kick, &drained, sizeof drained) > 0) {
        }
        g.unlock();
        if (m.opts.before_reply_poll) m.opts.before_reply_poll();
        pollfd pf[2] = {{sock, POLLIN, 0}, {m.reader_kick, POLLIN, 0}};
        const int n = ::poll(pf, 2, ms);
        g.lock();
        m.reader_active = false;
        m.replies_cv.notify_all(); // a waiter on the cv may take the reader role now
        if (n == 0) return -ETIMEDOUT;
    }
    bool kicked = m.opts.stall_kick_ms <= 0;
    if (poll_fence_fd(fd, 0, sock) != 0) note_host_block("fence");
    for (;;) {
        int64_t slice = -1;
        if (deadline != Clock::time_point::max())
            slice = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count());
        if (!kicked) {
            const int64_t kick_ns = int64_t(m.opts.stall_kick_ms) * 1'000'000;
            if (slice < 0 || slice > kick_ns) slice = kick_ns;
        }
        const int r = poll_fence_fd(fd, slice, sock);
        if (r == 0) {
            ::close(fd);
            m.timelines.mark_signaled(fence.ring_idx, fence.point);
            return 0;
        }
        if (r != -ETIMEDOUT || Clock::now() >= deadline || kicked) {
            ::close(fd);
            if (r == -EPIPE) {
                std::lock_guard g(m.mu);
                return m.fail(-EPIPE, "waiting for a fence");
            }
            return r;
        }
        // §12.3: the server may have retired this fence before queueing it; it then signals with
        // the ring's next fence. Send an empty fenced batch on the ring, once per wait.
        kicked = true;
        std::lock_guard g(m.mu);
        if (m.dead) {
            ::close(fd);
            return -EPIPE;
        }
        if (fence.point == m.timelines.last(fence.ring_idx)) {
            if (int e = m.send_submit({}, vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX | vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD,
                                      fence.ring_idx);
                e < 0) {
                ::close(fd);
                return e;
            }
            m.replies.push_back({Impl::ReplyKind::Kick, 0, fence.ring_idx, 0});
            ++m.kicks;
        }
    }
}

int VtestTransport::wait_host_io(int64_t timeout_ns) {
    Impl& m = *impl_;
    int sock;
    {
        std::lock_guard g(m.mu);
        if (m.dead) return -EPIPE;
        sock = m.sock;
    }
    // POLLRDHUP alone: unread replies (POLLIN) must not end the sleep, a server hang-up must.
    pollfd pf{sock, POLLRDHUP, 0};
    const timespec ts{static_cast<time_t>(std::max<int64_t>(timeout_ns, 0) / 1'000'000'000),
                      static_cast<long>(std::max<int64_t>(timeout_ns, 0) % 1'000'000'000)};
    const int n = ::ppoll(&pf, 1, &ts, nullptr);
    if (n == 1 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        std::lock_guard g(m.mu);
        return m.fail(-EPIPE, "waiting for the host");
    }
    return 0;
}

int VtestTransport::map_blob(uint32_t handle, uint64_t size, void** ptr) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    Impl::Entry* e = m.entry(handle);
    if (!e || e->close_requested) return -ENOENT;
    if (e->map) {
        if (size > e->map_size) return -EINVAL;
        *ptr = e->map;
        return 0;
    }
    if (m.dead) return -EPIPE;
    if (size == 0 || size > e->size) return -EINVAL;
    if (e->pending)
        if (int r = m.drain_until([&] { return !m.entries[handle - 1].pending; }); r < 0) return r;
    e = &m.entries[handle - 1];
    int fd = e->fd;
    if (fd >= 0) {
        e->fd = -1;
        --m.held_fds;
    } else {
        // V10: RESOURCE_EXPORT_FD gives a fresh fd; its reply follows every earlier one.
        const uint32_t p[1] = {e->res_id};
        if (int r = m.send_msg(vtest::VCMD_RESOURCE_EXPORT_FD, p, "RESOURCE_EXPORT_FD"); r < 0) return r;
        if (int r = m.drain_all(); r < 0) return r;
        if (int r = m.expect_hdr(0, vtest::VCMD_RESOURCE_EXPORT_FD, "RESOURCE_EXPORT_FD"); r < 0) return r;
        if (int r = m.read_fd(&fd, "RESOURCE_EXPORT_FD"); r < 0) return r;
        e = &m.entries[handle - 1];
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) return -err;
    e->map = p;
    e->map_size = size;
    *ptr = p;
    return 0;
}

void VtestTransport::unmap_blob(uint32_t handle, void* ptr, uint64_t) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    Impl::Entry* e = m.entry(handle);
    if (!e || !e->map || e->map != ptr) return;
    ::munmap(e->map, e->map_size);
    e->map = nullptr;
    e->map_size = 0;
}

int VtestTransport::close_blob(uint32_t handle) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    Impl::Entry* e = m.entry(handle);
    if (!e || e->close_requested) return -ENOENT;
    if (e->pending && !m.dead) {
        // Its res_id is not known yet: unref when the reply arrives (never wait here).
        e->close_requested = true;
        if (e->map) ::munmap(e->map, e->map_size);
        e->map = nullptr;
        return 0;
    }
    const uint32_t res_id = e->res_id;
    m.release(handle);
    if (m.dead) return -EPIPE;
    return m.send_unref(res_id);
}

int VtestTransport::export_blob_fd(uint32_t handle, int* fd) {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    Impl::Entry* e = m.entry(handle);
    if (!e || e->close_requested) return -ENOENT;
    if (m.dead) return -EPIPE;
    if (e->pending)
        if (int r = m.drain_until([&] { return !m.entries[handle - 1].pending; }); r < 0) return r;
    const uint32_t p[1] = {m.entries[handle - 1].res_id};
    if (int r = m.send_msg(vtest::VCMD_RESOURCE_EXPORT_FD, p, "RESOURCE_EXPORT_FD"); r < 0) return r;
    if (int r = m.drain_all(); r < 0) return r;
    if (int r = m.expect_hdr(0, vtest::VCMD_RESOURCE_EXPORT_FD, "RESOURCE_EXPORT_FD"); r < 0) return r;
    return m.read_fd(fd, "RESOURCE_EXPORT_FD");
}

int VtestTransport::import_blob_fd(int, uint32_t*, uint64_t*) { return -EOPNOTSUPP; }

void VtestTransport::close() {
    Impl& m = *impl_;
    std::lock_guard g(m.mu);
    if (m.sock < 0) return;
    if (!m.dead) {
        m.dead = true;
        m.why = "transport closed";
    }
    // The server tears the context down on disconnect (§12.1): no unrefs needed.
    ::shutdown(m.sock, SHUT_RDWR);
    m.replies.clear();
    m.timelines.reset(0);
}

} // namespace fdnc
