#include "transports/vtest_stream.h"

#include <sys/un.h>

#include <algorithm>
#include <cerrno>

namespace fdnc {

using namespace vtest_client;

VtestTransport::Impl::~Impl() {
    if (reader_kick >= 0) ::close(reader_kick);
    for (Entry& e : entries) {
        if (e.fd >= 0) ::close(e.fd);
        if (e.map) ::munmap(e.map, e.map_size);
    }
    if (sock >= 0) ::close(sock);
}

int VtestTransport::Impl::fail(int err, const std::string& what) {
    if (!dead) {
        dead = true;
        why = what + ": " + errno_text(err);
        if (err == -EPIPE) why = what + ": vtest server closed the connection";
        if (sock >= 0) ::shutdown(sock, SHUT_RDWR); // wakes fence waiters watching the socket
        replies_cv.notify_all();
    }
    return err == -ETIMEDOUT ? -ETIMEDOUT : -EPIPE;
}

VtestTransport::Impl::Entry* VtestTransport::Impl::entry(uint32_t handle) {
    if (handle == 0 || handle > entries.size() || !entries[handle - 1].used) return nullptr;
    return &entries[handle - 1];
}

uint32_t VtestTransport::Impl::new_handle() {
    if (!free_handles.empty()) {
        const uint32_t h = free_handles.back();
        free_handles.pop_back();
        entries[h - 1] = Entry{};
        entries[h - 1].used = true;
        return h;
    }
    entries.push_back(Entry{});
    entries.back().used = true;
    return static_cast<uint32_t>(entries.size());
}

void VtestTransport::Impl::release(uint32_t handle) {
    Entry& e = entries[handle - 1];
    if (e.fd >= 0) {
        ::close(e.fd);
        --held_fds;
    }
    if (e.map) ::munmap(e.map, e.map_size);
    e = Entry{};
    free_handles.push_back(handle);
}

int VtestTransport::Impl::read(void* buf, size_t n, const char* what) {
    const int r = vtest::read_full(sock, buf, n, opts.io_timeout_ms, nullptr);
    return r < 0 ? fail(r, std::string("reading ") + what) : 0;
}

int VtestTransport::Impl::read_fd(int* fd, const char* what) {
    const int r = vtest::recv_fd(sock, fd, opts.io_timeout_ms);
    return r < 0 ? fail(r, std::string("receiving the fd of ") + what) : 0;
}

int VtestTransport::Impl::expect_hdr(uint32_t len, uint32_t cmd, const char* what) {
    uint32_t hdr[2];
    if (int r = read(hdr, sizeof hdr, what); r < 0) return r;
    if (hdr[vtest::kHdrLen] != len || hdr[vtest::kHdrCmd] != cmd)
        return fail(-EPROTO, std::string("unexpected reply to ") + what + " (len " +
                                 std::to_string(hdr[0]) + ", cmd " + std::to_string(hdr[1]) + ")");
    return 0;
}

void VtestTransport::Impl::replies_progressed() {
    replies_cv.notify_all();
    if (reader_active) {
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t w = ::write(reader_kick, &one, sizeof one);
    }
}

int VtestTransport::Impl::read_one_reply() {
    pollfd ready{sock, POLLIN, 0};
    const bool arrived = ::poll(&ready, 1, 0) == 1;
    const int r = read_one_reply_raw();
    if (!arrived) note_host_block("vtest reply");
    if (r == 0) replies_progressed();
    return r;
}

int VtestTransport::Impl::read_one_reply_raw() {
    const Reply rep = replies.front();
    replies.pop_front();
    int fd = -1;
    switch (rep.kind) {
    case ReplyKind::Blob: {
        uint32_t res_id = 0;
        if (int r = expect_hdr(1, vtest::VCMD_RESOURCE_CREATE_BLOB, "RESOURCE_CREATE_BLOB"); r < 0) return r;
        if (int r = read(&res_id, sizeof res_id, "RESOURCE_CREATE_BLOB"); r < 0) return r;
        if (int r = read_fd(&fd, "RESOURCE_CREATE_BLOB"); r < 0) return r;
        Entry& e = entries[rep.handle - 1];
        e.pending = false;
        e.res_id = res_id;
        if (e.close_requested) {
            ::close(fd);
            release(rep.handle);
            return send_unref(res_id);
        }
        if (held_fds < kMaxHeldFds) {
            e.fd = fd;
            ++held_fds;
        } else {
            ::close(fd);
        }
        return 0;
    }
    case ReplyKind::Fence:
        if (int r = read_fd(&fd, "SUBMIT_CMD2 out-fence"); r < 0) return r;
        timelines.attach(rep.ring, rep.point, fd);
        return 0;
    case ReplyKind::Kick:
        if (int r = read_fd(&fd, "SUBMIT_CMD2 out-fence"); r < 0) return r;
        ::close(fd);
        return 0;
    }
    return 0;
}

int VtestTransport::Impl::drain_all() {
    while (!replies.empty())
        if (int r = read_one_reply(); r < 0) return r;
    return 0;
}

int VtestTransport::Impl::send(const void* buf, size_t n, const char* what) {
    auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
        const ssize_t put = ::send(sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put > 0) {
            p += put;
            n -= static_cast<size_t>(put);
            continue;
        }
        if (put < 0 && errno == EINTR) continue;
        if (put < 0 && errno != EAGAIN) return fail(-(errno == ECONNRESET ? EPIPE : errno), std::string("sending ") + what);
        if (int r = wait_writable(what); r < 0) return r;
    }
    return 0;
}

int VtestTransport::Impl::wait_writable(const char* what) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(opts.io_timeout_ms);
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return fail(-ETIMEDOUT, std::string("sending ") + what);
        pollfd pf{sock, static_cast<short>(POLLOUT | (replies.empty() ? 0 : POLLIN)), 0};
        int n = ::poll(&pf, 1, 0);
        if (n == 0) { // the socket is full: from here on this call waits for the server
            note_host_block("vtest socket space");
            n = ::poll(&pf, 1, static_cast<int>(left));
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(-errno, std::string("sending ") + what);
        if (pf.revents & POLLOUT) return 0;
        if (pf.revents & POLLIN) {
            if (int r = read_one_reply(); r < 0) return r;
            continue;
        }
        if (pf.revents & (POLLHUP | POLLERR)) return fail(-EPIPE, std::string("sending ") + what);
    }
}

int VtestTransport::Impl::send_fd(int fd, const char* what) {
    if (int r = wait_writable(what); r < 0) return r;
    const int r = vtest::send_fd(sock, fd, opts.io_timeout_ms);
    return r < 0 ? fail(r, std::string("sending the fd of ") + what) : 0;
}

int VtestTransport::Impl::send_msg(uint32_t cmd, std::span<const uint32_t> payload, const char* what) {
    std::vector<uint32_t> msg(vtest::kHdrSize + payload.size());
    msg[vtest::kHdrLen] = static_cast<uint32_t>(payload.size());
    msg[vtest::kHdrCmd] = cmd;
    std::copy(payload.begin(), payload.end(), msg.begin() + vtest::kHdrSize);
    return send(msg.data(), msg.size() * 4, what);
}

int VtestTransport::Impl::send_unref(uint32_t res_id) {
    const uint32_t p[1] = {res_id};
    return send_msg(vtest::VCMD_RESOURCE_UNREF, p, "RESOURCE_UNREF");
}

int VtestTransport::Impl::send_submit(std::span<const uint8_t> cmd, uint32_t flags, uint32_t ring) {
    const std::vector<uint32_t> msg = encode_submit(cmd, flags, ring);
    return send(msg.data(), msg.size() * 4, "SUBMIT_CMD2");
}

std::vector<uint32_t> VtestTransport::Impl::encode_submit(std::span<const uint8_t> cmd, uint32_t flags, uint32_t ring) {
    const uint32_t cmd_dw = static_cast<uint32_t>(cmd.size() / 4);
    const uint32_t table_dw = 1 + vtest::kBatchDwords;
    std::vector<uint32_t> msg(vtest::kHdrSize + table_dw + cmd_dw);
    uint32_t* pl = msg.data() + vtest::kHdrSize;
    msg[vtest::kHdrLen] = table_dw + cmd_dw;
    msg[vtest::kHdrCmd] = vtest::VCMD_SUBMIT_CMD2;
    pl[0] = 1;
    uint32_t* b = pl + 1;
    b[vtest::kBatchFlags] = flags;
    b[vtest::kBatchCmdOffset] = table_dw;
    b[vtest::kBatchCmdSize] = cmd_dw;
    b[vtest::kBatchSyncOffset] = table_dw + cmd_dw;
    b[vtest::kBatchSyncCount] = 0;
    b[vtest::kBatchRingIdx] = ring;
    if (!cmd.empty()) std::memcpy(pl + table_dw, cmd.data(), cmd.size());
    return msg;
}

int VtestTransport::Impl::bound_pending() {
    if (replies.size() < kMaxPendingReplies) return 0;
    while (replies.size() > kMaxPendingReplies / 2)
        if (int r = read_one_reply(); r < 0) return r;
    return 0;
}
int VtestTransport::Impl::connect_and_negotiate(VtestProbe* probe) {
    const std::string& path = opts.socket_path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        why = "vtest socket path '" + path + "' is empty or too long";
        return -ENAMETOOLONG;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        const int e = -errno;
        why = "socket(AF_UNIX): " + errno_text(e);
        return e;
    }
    if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int e = -errno;
        why = "no vtest server at " + path + ": connect: " + errno_text(e);
        return e;
    }
    if (probe) probe->connected = true;

    // V1: CREATE_RENDERER's length is in bytes (name incl. NUL), §8.1.
    const std::string name = opts.client_name.empty() ? "fdnc" : opts.client_name;
    std::vector<uint8_t> msg(8 + name.size() + 1, 0);
    const uint32_t hdr[2] = {static_cast<uint32_t>(name.size() + 1), vtest::VCMD_CREATE_RENDERER};
    std::memcpy(msg.data(), hdr, 8);
    std::memcpy(msg.data() + 8, name.c_str(), name.size());
    if (int r = send(msg.data(), msg.size(), "CREATE_RENDERER"); r < 0) return r;

    // PING + BUSY_WAIT(0) probe: a server that knows PING answers it first; an old one only
    // answers the busy-wait.
    const uint32_t probe_msg[6] = {0, vtest::VCMD_PING_PROTOCOL_VERSION, vtest::kBusyWaitSize,
                                   vtest::VCMD_RESOURCE_BUSY_WAIT, 0, 0};
    if (int r = send(probe_msg, sizeof probe_msg, "PING_PROTOCOL_VERSION"); r < 0) return r;
    uint32_t rh[2];
    if (int r = read(rh, sizeof rh, "PING_PROTOCOL_VERSION"); r < 0) return r;
    bool ping = false;
    if (rh[0] == 0 && rh[1] == vtest::VCMD_PING_PROTOCOL_VERSION) {
        ping = true;
        if (int r = expect_hdr(1, vtest::VCMD_RESOURCE_BUSY_WAIT, "RESOURCE_BUSY_WAIT"); r < 0) return r;
    } else if (!(rh[0] == 1 && rh[1] == vtest::VCMD_RESOURCE_BUSY_WAIT)) {
        return fail(-EPROTO, "unexpected reply to the PING probe");
    }
    uint32_t busy;
    if (int r = read(&busy, 4, "RESOURCE_BUSY_WAIT"); r < 0) return r;
    if (probe) probe->ping_supported = ping;
    if (!ping) {
        why = "vtest server at " + path + " predates protocol negotiation (version 0): native contexts need >= 3";
        return -EPROTONOSUPPORT;
    }
    const uint32_t ver[1] = {vtest::kProtocolVersion};
    if (int r = send_msg(vtest::VCMD_PROTOCOL_VERSION, ver, "PROTOCOL_VERSION"); r < 0) return r;
    if (int r = expect_hdr(1, vtest::VCMD_PROTOCOL_VERSION, "PROTOCOL_VERSION"); r < 0) return r;
    if (int r = read(&version, 4, "PROTOCOL_VERSION"); r < 0) return r;
    if (probe) probe->protocol_version = version;
    if (version < vtest::kMinNativeContextVersion) {
        why = "vtest server speaks protocol " + std::to_string(version) + "; native contexts need >= 3";
        return -EPROTONOSUPPORT;
    }
    return 0;
}

} // namespace fdnc
