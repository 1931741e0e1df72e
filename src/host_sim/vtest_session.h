// One vtest client session (PROTOCOL.md §8) over a fdnc::Host: the protocol a connected client
// speaks. VtestServer (vtest_server.h) accepts connections and runs one session each; fuzzers drive
// a session directly through a socketpair.
//
// A VtestSession serves one connected client: one Host context (so one GPU address space) per
// connection. It never trusts the client: lengths are bounded before anything is allocated, fixed
// commands must carry exactly their size, fds must come exactly where the protocol puts them (any
// other fd is closed), and a stalled half-message times out. Any violation ends the session with
// a reason; the host context and every resource go with it (§12.1 disconnect), other clients
// are not affected. Like VR13, a failing command (e.g. an aborted ccmd stream) also disconnects.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "virtio_proto/host.h"

namespace fdnc {

using VtestLog = std::function<void(const std::string&)>;

struct VtestLimits {
    uint32_t max_submit_dwords = 16u << 20;     // 64 MiB of SUBMIT_CMD2 payload
    uint32_t max_name_bytes = 4096;             // CREATE_RENDERER
    uint64_t max_blob_size = 64ull << 30;       // one blob
    uint32_t max_resources = 1u << 20;          // live res_ids per client
    uint32_t max_capset_bytes = 1u << 16;
    int message_timeout_ms = 10000;             // a started message must complete within this
    int in_fence_timeout_ms = 60000;            // a client in-fence that never signals ends the session
    uint32_t command_delay_us = 0;              // injected host latency before each command runs
};

// Fence fds handed to one client, signaled when the Host retires their fence (per ring, in order).
class VtestFenceTable;

class VtestSession {
public:
    // `sock` stays owned by the caller. ctx_id must be unique on `host`.
    VtestSession(int sock, Host& host, uint32_t ctx_id, VtestLimits limits = {});
    ~VtestSession(); // destroys the host context (if created) and every fence fd
    VtestSession(const VtestSession&) = delete;
    VtestSession& operator=(const VtestSession&) = delete;

    // Serves until the client disconnects, misbehaves, or *stop becomes true (checked at least
    // every 100 ms while idle). Returns why the session ended ("client disconnected" if cleanly).
    std::string serve(const std::atomic<bool>* stop = nullptr);

    // Host fence callback entry (any thread): retires fences of `ring` up to fence_id.
    void fence_retired(uint32_t ring, uint64_t fence_id);

    uint32_t ctx_id() const { return ctx_id_; }
    uint64_t commands() const { return commands_; }

private:
    struct Stop {};
    int process(uint32_t len, uint32_t cmd, std::string* why);
    int read_payload(void* buf, size_t n, std::string* why);
    int send_bytes(const void* buf, size_t n, std::string* why);
    int send_reply(uint32_t cmd, std::initializer_list<uint32_t> payload, std::string* why);
    int send_fd(int fd, std::string* why);
    int recv_fd(int* fd, std::string* why);
    int cmd_create_renderer(uint32_t len, std::string* why);
    int cmd_get_capset(std::string* why);
    int cmd_context_init(std::string* why);
    int cmd_create_blob(std::string* why);
    int cmd_unref(std::string* why);
    int cmd_export_fd(std::string* why);
    int cmd_submit2(uint32_t len, std::string* why);
    int wait_in_fence(int fd, std::string* why);

    int sock_;
    Host& host_;
    uint32_t ctx_id_;
    VtestLimits limits_;
    const std::atomic<bool>* stop_ = nullptr;
    bool renderer_ = false;
    bool ctx_created_ = false;
    uint32_t version_ = 0;
    uint32_t next_res_id_ = 1;
    uint64_t next_fence_id_ = 0;
    uint64_t commands_ = 0;
    std::set<uint32_t> resources_;
    std::shared_ptr<VtestFenceTable> fences_;
};

} // namespace fdnc
