// The server side of the vtest protocol (PROTOCOL.md §8) over a fdnc::Host: what fdnc-hostsim
// runs, and what fuzzers drive through a socketpair.
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

#include "host.h"

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

struct VtestServerConfig {
    std::string socket_path;
    VtestLimits limits;
    // Connections served at once; more wait in the listen backlog. 1 = virgl_test_server
    // --no-fork's behaviour (§12.3); its --multi-clients corresponds to a larger value.
    uint32_t max_clients = 1;
    VtestLog log; // one line per event (connect, disconnect with reason); may be empty
};

// Listens on a unix socket; one thread per client; all clients share one Host (one context each).
class VtestServer {
public:
    // Binds socket_path (a stale socket file nobody listens on is replaced; a live one is an
    // error). Installs the Host's fence callback. nullptr + *error on failure.
    static std::unique_ptr<VtestServer> listen(Host& host, VtestServerConfig cfg, std::string* error);
    ~VtestServer(); // stop(), joins every client, removes the socket file
    VtestServer(const VtestServer&) = delete;
    VtestServer& operator=(const VtestServer&) = delete;

    // Accepts and serves until stop(). Call from one thread.
    void run();
    // Thread-safe and async-signal-safe (one write to an eventfd).
    void stop();

    const std::string& socket_path() const { return cfg_.socket_path; }
    size_t active_clients() const;
    uint64_t clients_accepted() const { return accepted_; }
    uint64_t clients_dropped() const { return dropped_; } // ended for a protocol/host error

private:
    struct Client;
    VtestServer(Host& host, VtestServerConfig cfg);
    void log(const std::string& line) const;
    void reap(bool all);

    Host& host_;
    VtestServerConfig cfg_;
    int listen_fd_ = -1;
    int stop_fd_ = -1;
    int left_fd_ = -1; // a client thread finished: reap it, maybe accept the next one
    std::atomic<bool> stopping_{false};
    mutable std::mutex mu_;
    std::vector<std::unique_ptr<Client>> clients_;
    std::map<uint32_t, VtestSession*> sessions_; // ctx_id -> session (fence routing)
    uint32_t next_ctx_id_ = 1;
    std::atomic<uint64_t> accepted_{0};
    std::atomic<uint64_t> dropped_{0};
};

} // namespace fdnc
