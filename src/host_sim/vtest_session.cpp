#include "host_sim/vtest_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "virtio_proto/virtgpu_uapi.h"
#include "virtio_proto/vtest_wire.h"

namespace fdnc {

namespace {

std::string err_text(int neg) { return std::strerror(neg < 0 ? -neg : neg); }

constexpr int kIdlePollMs = 100;

} // namespace

// Server copies of the out-fence eventfds; the client got a dup. Retiring writes 1 so the
// client's fd polls readable (a sync_file stand-in), then closes ours.
class VtestFenceTable {
public:
    ~VtestFenceTable() {
        for (auto& [ring, m] : rings_)
            for (auto& [id, fd] : m) ::close(fd);
    }
    void add(uint32_t ring, uint64_t id, int fd) {
        std::lock_guard g(mu_);
        rings_[ring][id] = fd;
    }
    void retire(uint32_t ring, uint64_t id) {
        std::lock_guard g(mu_);
        auto rit = rings_.find(ring);
        if (rit == rings_.end()) return;
        auto& m = rit->second;
        // F4: a ring's fences retire in order, so everything up to id is done too.
        for (auto it = m.begin(); it != m.end() && it->first <= id;) {
            const uint64_t one = 1;
            [[maybe_unused]] ssize_t w = ::write(it->second, &one, sizeof one);
            ::close(it->second);
            it = m.erase(it);
        }
    }

private:
    std::mutex mu_;
    std::map<uint32_t, std::map<uint64_t, int>> rings_;
};

VtestSession::VtestSession(int sock, Host& host, uint32_t ctx_id, VtestLimits limits)
    : sock_(sock), host_(host), ctx_id_(ctx_id), limits_(limits), fences_(std::make_shared<VtestFenceTable>()) {}

VtestSession::~VtestSession() {
    // §12.1 disconnect: the whole context goes (every bo, the address space).
    if (ctx_created_) {
        for (uint32_t res : resources_) host_.resource_unref(ctx_id_, res);
        host_.context_destroy(ctx_id_);
    }
}

void VtestSession::fence_retired(uint32_t ring, uint64_t fence_id) { fences_->retire(ring, fence_id); }

int VtestSession::read_payload(void* buf, size_t n, std::string* why) {
    std::vector<int> fds;
    const int r = vtest::read_full(sock_, buf, n, limits_.message_timeout_ms, &fds);
    if (r == 0 && !fds.empty()) {
        vtest::close_fds(fds);
        *why = "fd sent where the protocol has none";
        return -EPROTO;
    }
    vtest::close_fds(fds);
    if (r == -ETIMEDOUT) *why = "client stalled in the middle of a message";
    else if (r == -EPIPE) *why = "client disconnected in the middle of a message";
    else if (r < 0) *why = "read failed: " + err_text(r);
    return r;
}

int VtestSession::send_bytes(const void* buf, size_t n, std::string* why) {
    const int r = vtest::write_full(sock_, buf, n, limits_.message_timeout_ms);
    if (r < 0) *why = r == -ETIMEDOUT ? "client does not read its replies" : "write failed: " + err_text(r);
    return r;
}

int VtestSession::send_reply(uint32_t cmd, std::initializer_list<uint32_t> payload, std::string* why) {
    std::vector<uint32_t> msg{static_cast<uint32_t>(payload.size()), cmd};
    msg.insert(msg.end(), payload.begin(), payload.end());
    return send_bytes(msg.data(), msg.size() * 4, why);
}

int VtestSession::send_fd(int fd, std::string* why) {
    const int r = vtest::send_fd(sock_, fd, limits_.message_timeout_ms);
    if (r < 0) *why = "sending an fd failed: " + err_text(r);
    return r;
}

int VtestSession::recv_fd(int* fd, std::string* why) {
    const int r = vtest::recv_fd(sock_, fd, limits_.message_timeout_ms);
    if (r == -EPROTO) *why = "expected exactly one fd with the fd byte";
    else if (r < 0) *why = "receiving an fd failed: " + err_text(r);
    return r;
}

std::string VtestSession::serve(const std::atomic<bool>* stop) {
    stop_ = stop;
    std::string why;
    for (;;) {
        // Idle: wait for the next header, noticing a stop request.
        for (;;) {
            if (stop_ && stop_->load()) return "server shutting down";
            pollfd p{sock_, POLLIN, 0};
            const int n = ::poll(&p, 1, kIdlePollMs);
            if (n < 0 && errno != EINTR) return "poll failed: " + err_text(-errno);
            if (n > 0) break;
        }
        uint32_t hdr[vtest::kHdrSize];
        std::vector<int> fds;
        const int r = vtest::read_full(sock_, hdr, sizeof hdr, limits_.message_timeout_ms, &fds);
        const bool had_fds = !fds.empty();
        vtest::close_fds(fds);
        if (r == -EPIPE) return "client disconnected";
        if (r < 0)
            return r == -ETIMEDOUT ? "client stalled in the middle of a header" : "read failed: " + err_text(r);
        if (had_fds) return "fd sent with a command header";
        ++commands_;
        if (limits_.command_delay_us)
            std::this_thread::sleep_for(std::chrono::microseconds(limits_.command_delay_us));
        if (process(hdr[vtest::kHdrLen], hdr[vtest::kHdrCmd], &why) < 0) return why;
    }
}

int VtestSession::process(uint32_t len, uint32_t cmd, std::string* why) {
    auto fixed = [&](uint32_t want, const char* name) {
        if (len == want) return 0;
        *why = std::string(name) + ": payload length " + std::to_string(len) + " dwords, expected " +
               std::to_string(want);
        return -EPROTO;
    };
    // §8.1: the first command must create the renderer.
    if (!renderer_ && cmd != vtest::VCMD_CREATE_RENDERER) {
        *why = "first command " + std::to_string(cmd) + " is not CREATE_RENDERER";
        return -EPROTO;
    }
    switch (cmd) {
    case vtest::VCMD_CREATE_RENDERER:
        if (renderer_) {
            *why = "second CREATE_RENDERER";
            return -EPROTO;
        }
        return cmd_create_renderer(len, why);
    case vtest::VCMD_PING_PROTOCOL_VERSION:
        if (int r = fixed(0, "PING_PROTOCOL_VERSION")) return r;
        return send_reply(vtest::VCMD_PING_PROTOCOL_VERSION, {}, why);
    case vtest::VCMD_RESOURCE_BUSY_WAIT: {
        if (int r = fixed(vtest::kBusyWaitSize, "RESOURCE_BUSY_WAIT")) return r;
        uint32_t p[2];
        if (int r = read_payload(p, sizeof p, why)) return r;
        // Host resources are never busy for the CPU here: GPU work is tracked with fences.
        return send_reply(vtest::VCMD_RESOURCE_BUSY_WAIT, {0}, why);
    }
    case vtest::VCMD_PROTOCOL_VERSION: {
        if (int r = fixed(1, "PROTOCOL_VERSION")) return r;
        uint32_t v;
        if (int r = read_payload(&v, 4, why)) return r;
        version_ = std::min(v, vtest::kProtocolVersion);
        if (version_ == 1) version_ = 0; // §8.1
        return send_reply(vtest::VCMD_PROTOCOL_VERSION, {version_}, why);
    }
    case vtest::VCMD_GET_PARAM: {
        if (int r = fixed(vtest::kGetParamSize, "GET_PARAM")) return r;
        uint32_t param;
        if (int r = read_payload(&param, 4, why)) return r;
        if (param == vtest::VCMD_PARAM_MAX_TIMELINE_COUNT) return send_reply(vtest::VCMD_GET_PARAM, {1, 64}, why);
        // No DRM syncobjs here (HAS_TIMELINE_SYNCOBJ and anything unknown: not valid).
        return send_reply(vtest::VCMD_GET_PARAM, {0, 0}, why);
    }
    case vtest::VCMD_GET_CAPSET:
        if (int r = fixed(vtest::kGetCapsetSize, "GET_CAPSET")) return r;
        return cmd_get_capset(why);
    case vtest::VCMD_CONTEXT_INIT:
        if (int r = fixed(vtest::kContextInitSize, "CONTEXT_INIT")) return r;
        return cmd_context_init(why);
    case vtest::VCMD_RESOURCE_CREATE_BLOB:
        if (int r = fixed(vtest::kBlobCreateSize, "RESOURCE_CREATE_BLOB")) return r;
        return cmd_create_blob(why);
    case vtest::VCMD_RESOURCE_UNREF:
        if (int r = fixed(vtest::kResourceUnrefSize, "RESOURCE_UNREF")) return r;
        return cmd_unref(why);
    case vtest::VCMD_RESOURCE_EXPORT_FD:
        if (int r = fixed(vtest::kExportFdSize, "RESOURCE_EXPORT_FD")) return r;
        return cmd_export_fd(why);
    case vtest::VCMD_SUBMIT_CMD2:
        return cmd_submit2(len, why);
    default:
        *why = "unsupported command " + std::to_string(cmd);
        return -EPROTO;
    }
}

int VtestSession::cmd_create_renderer(uint32_t len, std::string* why) {
    // §8.1: the length is in bytes here (name incl. NUL).
    if (len == 0 || len > limits_.max_name_bytes) {
        *why = "CREATE_RENDERER name length " + std::to_string(len) + " out of range";
        return -EPROTO;
    }
    std::vector<char> name(len);
    if (int r = read_payload(name.data(), len, why)) return r;
    renderer_ = true;
    return 0;
}

int VtestSession::cmd_get_capset(std::string* why) {
    uint32_t p[2];
    if (int r = read_payload(p, sizeof p, why)) return r;
    // One call into a bounded buffer: the host reports its full size, which must fit (§8.3).
    std::vector<uint32_t> msg(vtest::kHdrSize + 1 + limits_.max_capset_bytes / 4, 0);
    const int size = host_.get_capset(p[0], p[1], {reinterpret_cast<uint8_t*>(msg.data() + 3), limits_.max_capset_bytes / 4 * 4});
    if (size <= 0 || static_cast<uint32_t>(size) > limits_.max_capset_bytes / 4 * 4)
        return send_reply(vtest::VCMD_GET_CAPSET, {0}, why); // §8.3 unsupported
    const uint32_t dw = (static_cast<uint32_t>(size) + 3) / 4;
    msg.resize(vtest::kHdrSize + 1 + dw);
    msg[0] = 1 + dw;
    msg[1] = vtest::VCMD_GET_CAPSET;
    msg[2] = 1;
    return send_bytes(msg.data(), msg.size() * 4, why);
}

int VtestSession::cmd_context_init(std::string* why) {
    uint32_t capset;
    if (int r = read_payload(&capset, 4, why)) return r;
    if (capset == 0) {
        *why = "CONTEXT_INIT with capset id 0";
        return -EPROTO;
    }
    if (ctx_created_) return 0; // §8.3: a repeat is accepted (same id; the host checks the id once)
    if (version_ < vtest::kMinNativeContextVersion) {
        *why = "CONTEXT_INIT before negotiating protocol >= 3";
        return -EPROTO;
    }
    // vtest carries no ring count: the host serves as many timelines as it has (§8.4: < 64).
    if (int r = host_.context_create(ctx_id_, capset, vtest::kMaxRings); r < 0) {
        *why = "host refused CONTEXT_INIT(capset " + std::to_string(capset) + "): " + err_text(r);
        return r;
    }
    ctx_created_ = true;
    return 0;
}

int VtestSession::cmd_create_blob(std::string* why) {
    uint32_t p[vtest::kBlobCreateSize];
    if (int r = read_payload(p, sizeof p, why)) return r;
    if (!ctx_created_) {
        *why = "RESOURCE_CREATE_BLOB before CONTEXT_INIT";
        return -EPROTO;
    }
    const uint32_t type = p[0], flags = p[1];
    const uint64_t size = p[2] | uint64_t(p[3]) << 32;
    const uint64_t blob_id = p[4] | uint64_t(p[5]) << 32;
    if (flags & ~wire::VIRTGPU_BLOB_FLAGS) {
        *why = "RESOURCE_CREATE_BLOB: unknown flags 0x" + std::to_string(flags);
        return -EPROTO;
    }
    if (size == 0 || size > limits_.max_blob_size) {
        *why = "RESOURCE_CREATE_BLOB: size " + std::to_string(size) + " out of range";
        return -EPROTO;
    }
    if (resources_.size() >= limits_.max_resources || next_res_id_ == 0) {
        *why = "too many resources";
        return -EPROTO;
    }
    const uint32_t res_id = next_res_id_++;
    if (int r = host_.resource_create_blob(ctx_id_, res_id, type, flags, size, blob_id); r < 0) {
        *why = "RESOURCE_CREATE_BLOB(blob_id " + std::to_string(blob_id) + ") failed: " + err_text(r);
        return r;
    }
    resources_.insert(res_id);
    int fd = -1;
    // §8.3: the reply always carries an fd (V8: the client makes blobs MAPPABLE so one exists).
    if (int r = host_.resource_export_fd(ctx_id_, res_id, &fd); r < 0) {
        *why = "RESOURCE_CREATE_BLOB: cannot export res " + std::to_string(res_id) + ": " + err_text(r);
        return r;
    }
    int r = send_reply(vtest::VCMD_RESOURCE_CREATE_BLOB, {res_id}, why);
    if (r == 0) r = send_fd(fd, why);
    ::close(fd);
    return r;
}

int VtestSession::cmd_unref(std::string* why) {
    uint32_t res_id;
    if (int r = read_payload(&res_id, 4, why)) return r;
    // An unknown id is harmless (the real server ignores it too).
    if (resources_.erase(res_id)) host_.resource_unref(ctx_id_, res_id);
    return 0;
}

int VtestSession::cmd_export_fd(std::string* why) {
    uint32_t res_id;
    if (int r = read_payload(&res_id, 4, why)) return r;
    if (!resources_.count(res_id)) {
        *why = "RESOURCE_EXPORT_FD of unknown res " + std::to_string(res_id);
        return -EPROTO;
    }
    int fd = -1;
    if (int r = host_.resource_export_fd(ctx_id_, res_id, &fd); r < 0) {
        *why = "RESOURCE_EXPORT_FD(res " + std::to_string(res_id) + ") failed: " + err_text(r);
        return r;
    }
    int r = send_reply(vtest::VCMD_RESOURCE_EXPORT_FD, {}, why);
    if (r == 0) r = send_fd(fd, why);
    ::close(fd);
    return r;
}

int VtestSession::wait_in_fence(int fd, std::string* why) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limits_.in_fence_timeout_ms);
    for (;;) {
        if (stop_ && stop_->load()) {
            *why = "server shutting down";
            return -ECANCELED;
        }
        pollfd p{fd, POLLIN, 0};
        const int n = ::poll(&p, 1, kIdlePollMs);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) {
            *why = "in-fence poll failed: " + err_text(-errno);
            return -errno;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            *why = "in-fence never signaled";
            return -ETIMEDOUT;
        }
    }
}

int VtestSession::cmd_submit2(uint32_t len, std::string* why) {
    if (len == 0 || len > limits_.max_submit_dwords) {
        *why = "SUBMIT_CMD2: payload length " + std::to_string(len) + " dwords out of range";
        return -EPROTO;
    }
    std::vector<uint32_t> pl(len);
    if (int r = read_payload(pl.data(), size_t(len) * 4, why)) return r;
    if (!ctx_created_) {
        *why = "SUBMIT_CMD2 before CONTEXT_INIT";
        return -EPROTO;
    }
    const uint64_t count = pl[0];
    if (count > (len - 1) / vtest::kBatchDwords) {
        *why = "SUBMIT_CMD2: batch_count " + std::to_string(count) + " does not fit the payload";
        return -EPROTO;
    }
    constexpr uint32_t kKnown = vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX | vtest::VCMD_SUBMIT_CMD2_FLAG_IN_FENCE_FD |
                                vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD;
    for (uint64_t i = 0; i < count; ++i) {
        const uint32_t* b = &pl[1 + i * vtest::kBatchDwords];
        const uint32_t flags = b[vtest::kBatchFlags];
        const uint64_t cmd_off = b[vtest::kBatchCmdOffset], cmd_size = b[vtest::kBatchCmdSize];
        const uint64_t sync_off = b[vtest::kBatchSyncOffset], sync_count = b[vtest::kBatchSyncCount];
        const uint32_t ring = b[vtest::kBatchRingIdx];
        const std::string at = "SUBMIT_CMD2 batch " + std::to_string(i) + ": ";
        if (flags & ~kKnown) {
            *why = at + "unknown flags";
            return -EPROTO;
        }
        if (cmd_off + cmd_size > len || (cmd_size && cmd_off < 1 + count * vtest::kBatchDwords)) {
            *why = at + "commands outside the payload";
            return -EPROTO;
        }
        if (sync_count) {
            *why = at + "vtest sync objects are not supported";
            return -EPROTO;
        }
        (void)sync_off;
        // §8.4: syncobj counts are honoured from protocol 4 on, reserved before.
        if (version_ >= 4 && (b[vtest::kBatchNumInSyncobj] || b[vtest::kBatchNumOutSyncobj])) {
            *why = at + "DRM syncobjs are not supported";
            return -EPROTO;
        }
        const bool ring_idx = flags & vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX;
        if (ring_idx && ring >= vtest::kMaxRings) {
            *why = at + "ring_idx " + std::to_string(ring) + " >= 64";
            return -EPROTO;
        }
        const bool out_fence = flags & vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD;
        if (out_fence && !ring_idx) { // §8.4: the real server asserts here
            *why = at + "OUT_FENCE_FD without RING_IDX";
            return -EPROTO;
        }
        if (flags & vtest::VCMD_SUBMIT_CMD2_FLAG_IN_FENCE_FD) {
            int in_fd = -1;
            if (int r = recv_fd(&in_fd, why)) return r;
            const int r = wait_in_fence(in_fd, why);
            ::close(in_fd);
            if (r) return r;
        }
        if (cmd_size) {
            std::span<const uint8_t> cmd(reinterpret_cast<const uint8_t*>(&pl[cmd_off]), cmd_size * 4);
            if (int r = host_.submit_cmd(ctx_id_, cmd); r < 0) {
                // §12.2 fatal class: VR13 drops the connection and the context.
                *why = at + "ccmd stream aborted by the host: " + err_text(r);
                return r;
            }
        }
        // §12.3: the real server never answers a ring-0 out-fence (the renderer retires it at once
        // and has no fd to pass); a client that reads one would block, so neither do we.
        if (!out_fence || ring == 0) continue;
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        if (efd < 0) {
            *why = at + "eventfd: " + err_text(-errno);
            return -errno;
        }
        const int client_fd = ::fcntl(efd, F_DUPFD_CLOEXEC, 0);
        if (client_fd < 0) {
            ::close(efd);
            *why = at + "dup: " + err_text(-errno);
            return -errno;
        }
        const uint64_t id = ++next_fence_id_;
        fences_->add(ring, id, efd); // before the host can retire it
        if (int r = host_.context_create_fence(ctx_id_, ring, id); r < 0) {
            ::close(client_fd);
            *why = at + "host refused a fence on ring " + std::to_string(ring) + ": " + err_text(r);
            return r;
        }
        const int r = send_fd(client_fd, why);
        ::close(client_fd);
        if (r) return r;
    }
    return 0;
}

} // namespace fdnc
