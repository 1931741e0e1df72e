// Transport: how a guest native context reaches its host. One interface, three implementations
// (inproc here; virtgpu = guest kernel ioctls; vtest = virglrenderer's socket). Only bytes, ids,
// fds and fence points cross it, so a transport may live in another process or another VM.
//
// Fences: every execbuf that asks for one gets a point on a per-ring timeline that the transport
// numbers itself (1, 2, 3, ... per ring). Ring 0 is the host CPU timeline (requests only); ring
// r >= 1 is the GPU timeline of submitqueue priority r-1 (PROTOCOL.md F1). A point is signaled when
// the host retired it; waiting on point p implies every earlier point of that ring is done.
#pragma once

#include <cstdint>
#include <ctime>
#include <span>
#include <string>

namespace fdnc {

// Host blocks: every transport call (and RequestBuffer's seqno wait) that actually blocked on the
// host — waited for a reply, a fence, a round trip or socket space — notes it here, on the calling
// thread, after it happened. A caller learns whether its own call blocked by comparing
// host_blocks_on_this_thread() before and after (Device counts bo_new waits this way), without
// attributing another thread's waits to itself.
uint64_t host_blocks_on_this_thread();
const char* last_host_block_on_this_thread(); // what the last one waited for ("" if none)
void note_host_block(const char* what);       // `what`: a string literal

// Host wakes: requests after which this thread had to wake the host's own thread because it slept
// idle (the in-process host; over a socket the kernel does the same inside write() and nothing
// counts it). A wake is a futex call and, to another CPU, an IPI: a per-call cost that is not a
// wait. Counted per thread like host blocks, for fdnc-replay's per-bo_new trace counters.
uint64_t host_wakes_on_this_thread();
void note_host_wake();

struct BlobCreateArgs {
    uint32_t blob_mem = 0;   // wire::VIRTGPU_BLOB_MEM_*
    uint32_t blob_flags = 0; // wire::VIRTGPU_BLOB_FLAG_*
    uint64_t size = 0;       // multiple of the page size (B10)
    uint64_t blob_id = 0;    // 0 = the shared page (B7), else a GEM_NEW's blob_id
    // ccmds the host runs before it looks up blob_id (the tunnelled GEM_NEW, §3.5); may be empty.
    std::span<const uint8_t> cmd;
};

struct TransportFence {
    uint32_t ring_idx = 0;
    uint64_t point = 0; // 0 = no fence
    explicit operator bool() const { return point != 0; }
};

struct ExecbufArgs {
    std::span<const uint8_t> cmd; // a ccmd stream, 4-byte aligned length
    uint32_t ring_idx = 0;
    bool fence_out = false; // create a fence on ring_idx after these commands
    int in_fence_fd = -1;   // sync_file the host waits for first; -1 for none (not consumed)
};

struct TransportInfo {
    std::string name;              // "inproc", "virtgpu", "vtest"
    std::string detail;            // device path, socket path, ...
    bool host_assigns_res_id;      // vtest: res_id known only after the server replies
    uint32_t host_page_size = 4096;
    // The host answers a fence on ring 0 (the CPU timeline) once the batch ran. vtest: no — the
    // real server never sends a ring-0 out-fence fd (PROTOCOL.md §12.3), so synchronous requests
    // complete on the shared page's seqno alone (§8.5 V10), as Mesa's vpipe does.
    bool ring0_fences = true;
};

class Transport {
public:
    virtual ~Transport() = default;

    virtual TransportInfo info() const = 0;

    // Copies min(out.size(), host size) bytes of capset (id, version); the rest of `out` is
    // zeroed. Returns the host's capset size in bytes, or -errno (-ENOENT: host lacks the capset).
    virtual int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) = 0;

    // Creates the context with `num_rings` fence timelines (ring 0 included). Once, first.
    virtual int context_init(uint32_t capset_id, uint32_t num_rings) = 0;

    // Creates a blob resource; returns a transport-local handle (never 0) in *handle.
    // Never waits for the host: errors of the tunnelled ccmd surface later (async_error).
    virtual int create_blob(const BlobCreateArgs& args, uint32_t* handle) = 0;

    // The resource id the host knows the blob by. May wait on vtest (pipelined reply); immediate
    // elsewhere. Counts as a host wait only where it really blocks (`*waited` set).
    virtual int resource_id(uint32_t handle, uint32_t* res_id, bool* waited = nullptr) = 0;

    // Sends a ccmd stream; with fence_out a fence point on args.ring_idx is returned.
    virtual int execbuf(const ExecbufArgs& args, TransportFence* out_fence) = 0;

    // 0 when the point has signaled, -ETIMEDOUT after timeout_ns (0 = poll, < 0 = no limit),
    // -errno on failure (-EPIPE: the host is gone).
    virtual int wait_fence(TransportFence fence, int64_t timeout_ns) = 0;

    // CPU mapping of a mappable blob; *ptr stays valid until unmap_blob or close_blob.
    virtual int map_blob(uint32_t handle, uint64_t size, void** ptr) = 0;
    virtual void unmap_blob(uint32_t handle, void* ptr, uint64_t size) = 0;

    // Drops the guest's reference; the host detaches the resource (B15).
    virtual int close_blob(uint32_t handle) = 0;

    // dma-buf style sharing: export returns a new fd owned by the caller; import returns a handle
    // (the same handle again for a resource already known: dedup) and the resource size.
    virtual int export_blob_fd(uint32_t handle, int* fd) = 0;
    virtual int import_blob_fd(int fd, uint32_t* handle, uint64_t* size) = 0;

    // Sleeps up to timeout_ns (>= 0) while the caller polls the shared page; returns early with
    // -EPIPE once the host is known to be gone (vtest: the server hung up), else 0. Lets a seqno
    // wait end at a dead host instead of at its own timeout.
    virtual int wait_host_io(int64_t timeout_ns) {
        const timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
        if (timeout_ns > 0) ::nanosleep(&ts, nullptr);
        return 0;
    }

    // Tears the context down; afterwards every call fails with -EPIPE and waits never hang.
    // Idempotent; destructors call it too. (Added with InprocTransport; default: nothing to do.)
    virtual void close() {}
};

} // namespace fdnc
