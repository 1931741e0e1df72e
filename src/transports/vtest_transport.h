// VtestTransport: a native context over virglrenderer's vtest socket (PROTOCOL.md §8), spoken to
// virgl_test_server --drm (>= 1.0) or to fdnc-hostsim alike.
//
// "Never waits on the host" (DESIGN.md): the server assigns res_ids and answers a blob create with
// {res_id} + fd, and an out-fence with an fd. Both are pipelined: the request is written and the
// call returns; replies are read in stream order only when a res_id, a mapping or a fence is
// first needed. Ring 0 carries no fences (the real server never answers them, §12.3): a
// synchronous request completes on the shared page's seqno (§8.5 V10). Every read and write has a deadline (io_timeout_ms); a closed or stalled server
// turns the transport dead and every later call returns -EPIPE (last_error() says why).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "virtio_proto/transport.h"

namespace fdnc {

struct VtestOptions {
    std::string socket_path;      // empty: $VTEST_SOCKET_NAME, else /tmp/.virgl_test (§8.1)
    int io_timeout_ms = 5000;     // bound on every socket read/write and the connect
    std::string client_name;      // CREATE_RENDERER name; empty: "fdnc"
    // §12.3: a real server may signal a ring's last fence only with the next one; after this long
    // without a signal a wait sends an empty fenced batch on that ring (0 = never).
    int stall_kick_ms = 50;
    // Test seam: runs on a fence waiter's thread after it dropped the lock and before it polls
    // the socket for its reply (the window in which another thread may read that reply).
    std::function<void()> before_reply_poll;
};

struct VtestProbe {
    bool connected = false;
    bool ping_supported = false;
    uint32_t protocol_version = 0;
    std::string error; // why not usable (empty when fine)
};

class VtestTransport : public Transport {
public:
    // Connects and negotiates the protocol (§8.5 V1). nullptr + *error (errno text included) when
    // no server listens, the server is too old (< protocol 3), or it misbehaves.
    static std::unique_ptr<VtestTransport> connect(const VtestOptions& opts, std::string* error,
                                                   VtestProbe* probe = nullptr);
    ~VtestTransport() override;
    VtestTransport(const VtestTransport&) = delete;
    VtestTransport& operator=(const VtestTransport&) = delete;

    TransportInfo info() const override;
    int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) override;
    int context_init(uint32_t capset_id, uint32_t num_rings) override;
    int create_blob(const BlobCreateArgs& args, uint32_t* handle) override;
    int resource_id(uint32_t handle, uint32_t* res_id, bool* waited = nullptr) override;
    int execbuf(const ExecbufArgs& args, TransportFence* out_fence) override;
    int wait_fence(TransportFence fence, int64_t timeout_ns) override;
    // Sleeps on the socket: -EPIPE as soon as the server hangs up (seqno waits, §12.3).
    int wait_host_io(int64_t timeout_ns) override;
    int map_blob(uint32_t handle, uint64_t size, void** ptr) override;
    void unmap_blob(uint32_t handle, void* ptr, uint64_t size) override;
    int close_blob(uint32_t handle) override;
    int export_blob_fd(uint32_t handle, int* fd) override;
    // vtest has no import command (MESA-main vdrm_vpipe leaves it unimplemented): -EOPNOTSUPP.
    int import_blob_fd(int fd, uint32_t* handle, uint64_t* size) override;
    void close() override;

    uint32_t protocol_version() const;
    std::string last_error() const; // why the transport died; empty while alive
    size_t pending_replies() const; // pipelined replies not read yet (tests, stats)
    uint64_t stall_kicks() const;   // empty fenced batches sent by stalled waits (§12.3)

    struct Impl;

private:
    explicit VtestTransport(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace fdnc
