// InprocTransport: a native context whose host runs in this process on its own thread.
// The host consumes execbufs, blob creates (with their tunnelled ccmds), unrefs and fences
// strictly in order. Latency is injected per direction: an item becomes visible to the host
// rtt/2 after it was sent, and a host answer (a fence retire, a map/export/import result)
// becomes visible to the guest rtt/2 after the host produced it. So only calls that wait pay
// the round trip; create_blob, execbuf and close_blob never wait. res_ids are chosen on the
// guest side, like a guest kernel does; handles are local to this transport.
//
// Several transports may share one Host (one context each, like processes in a VM); the Host is
// then called from each transport's host thread and must be thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "host.h"
#include "msm_uapi.h"
#include "transport.h"

namespace fdnc {

struct InprocConfig {
    uint32_t rtt_us = 0;  // guest <-> host round trip; each direction costs rtt/2
    uint32_t gpu_us = 0;  // GPU time per submit: for the host model, carried only
    uint64_t va_start = wire::kAdrenoVmStart; // host model's address space (§1.3)
    uint64_t va_size = wire::kDefaultVaSize;
    uint32_t gpu_id = 0;   // 0 = the host model's default
    uint64_t chip_id = 0;  // 0 = the host model's default
    uint64_t oom_after = 0; // host model: allocations that succeed before -ENOMEM (0 = never)
    uint32_t ctx_id = 0;    // 0 = a fresh process-wide id
    // A host that stops: once the context's shared page is mapped, the host thread keeps taking
    // requests and never runs or answers another one (round trips then end only at close()). What "never waits on the
    // host" is proven against: a call that waits can only time out.
    bool stall = false;
};

// "inproc", "inproc:" or "inproc:key=value,..." with keys rtt_us, gpu_us, va_start, va_size,
// gpu_id, chip_id, oom_after, ctx_id, stall (0/1). Numbers are decimal or 0x-hex with an optional K/M/G
// (binary) suffix. Unknown keys and bad numbers are errors; *error names the reason.
std::optional<InprocConfig> parse_inproc_uri(std::string_view uri, std::string* error = nullptr);

struct InprocStats {
    uint64_t items_sent = 0;     // execbufs, blob creates, unrefs, host calls queued
    uint64_t items_executed = 0; // of those, run by the host thread
    uint64_t host_waits = 0;     // guest calls that blocked on the host (fence waits, maps, ...)
    uint64_t host_errors = 0;    // host calls that failed (aborted ccmd streams, failed creates)
};

class InprocTransport : public Transport {
public:
    explicit InprocTransport(std::unique_ptr<Host> host, InprocConfig cfg = {});
    explicit InprocTransport(Host& host, InprocConfig cfg = {});
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
};

} // namespace fdnc
