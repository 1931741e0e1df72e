// The server side of the vtest protocol (PROTOCOL.md §8) over a fdnc::Host: what fdnc-hostsim
// runs. The accept loop and the client threads; each client is a VtestSession (vtest_session.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host_sim/vtest_session.h"
#include "virtio_proto/host.h"

namespace fdnc {

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
