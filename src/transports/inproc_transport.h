// InprocTransport: the client half of a native context whose host runs in this process. It keeps
// what a guest keeps (blob handles, per-ring fence points and what of them the guest has seen,
// the import dedup table) and talks to its host half (host_sim/inproc_host) through an
// InprocHostLink (virtio_proto/inproc_link.h). create_blob, execbuf and close_blob never wait;
// res_ids are chosen on the guest side, like a guest kernel does; handles are local to this
// transport.
//
// Opening one: open_transport("inproc:...") where an in-process host is registered (tools, tests:
// host_sim's inproc_host_dep), or InprocTransport(host::make_inproc_host(host, cfg)) directly.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "virtio_proto/inproc_link.h"
#include "virtio_proto/transport.h"

namespace fdnc {

// "inproc", "inproc:" or "inproc:key=value,..." with keys rtt_us, gpu_us, va_start, va_size,
// gpu_id, chip_id, oom_after, ctx_id, stall (0/1), poll_us (InprocConfig). Numbers are decimal or
// 0x-hex with an optional K/M/G (binary) suffix. Unknown keys and bad numbers are errors; *error names the reason.
std::optional<InprocConfig> parse_inproc_uri(std::string_view uri, std::string* error = nullptr);

struct InprocStats {
    uint64_t items_sent = 0;     // execbufs, blob creates, unrefs, host calls queued
    uint64_t items_executed = 0; // of those, run by the host thread
    uint64_t host_waits = 0;     // guest calls that blocked on the host (fence waits, maps, ...)
    uint64_t host_errors = 0;    // host calls that failed (aborted ccmd streams, failed creates)
};

class InprocTransport : public Transport {
public:
    explicit InprocTransport(std::unique_ptr<InprocHostLink> link);
    ~InprocTransport() override;
    InprocTransport(const InprocTransport&) = delete;
    InprocTransport& operator=(const InprocTransport&) = delete;

    TransportInfo info() const override;
    int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) override;
    int context_init(uint32_t capset_id, uint32_t num_rings) override;
    int create_blob(const BlobCreateArgs& args, uint32_t* handle) override;
    int resource_id(uint32_t handle, uint32_t* res_id, bool* waited = nullptr) override;
    int execbuf(const ExecbufArgs& args, TransportFence* out_fence) override;
    int wait_fence(TransportFence fence, int64_t timeout_ns) override;
    int map_blob(uint32_t handle, uint64_t size, void** ptr) override;
    void unmap_blob(uint32_t handle, void* ptr, uint64_t size) override;
    int close_blob(uint32_t handle) override;
    int export_blob_fd(uint32_t handle, int* fd) override;
    int import_blob_fd(int fd, uint32_t* handle, uint64_t* size) override;
    void close() override; // destroys the host context; later calls get -EPIPE

    // Stops the host thread without tearing the context down, as if the host process died:
    // queued work is dropped and every call (and every wait already blocked) returns -EPIPE.
    void simulate_host_death();

    InprocStats stats() const;
    uint32_t ctx_id() const;
    const InprocConfig& config() const;
    Host& host();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
    std::unique_ptr<InprocHostLink> link_; // destroyed first: no retire reaches a dead Impl
};

} // namespace fdnc
