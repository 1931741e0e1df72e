// RequestBuffer: the guest's ccmd channel to the host (Mesa's vdrm.c role). Packs requests back to
// back in a 16 KiB buffer, gives each a seqno (Q1) and, when it has a response, a slot in the
// shared page's response area (Q7); flushes to ring 0 when full, before a blob create or a submit
// (so the host sees earlier requests first: Q4/Q5, D4), and when a caller needs a response.
// Thread-safe: one lock orders seqnos, buffered bytes and transport calls.
// Records are packed at their own 4-aligned hdr.len (IOCTL_SIMPLE's exact len forbids padding to 8).
// Unlike Mesa (Q7), a slot that a send_sync caller is still reading is never handed out again, and
// every request with a response gets a slot of at least the host's response size (R2).
// Timeouts are in ns; < 0 waits without limit. Construct it after the host wrote rsp_mem_offset
// (InprocTransport::map_blob returns only after the create ran).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "transport.h"
#include "util/seqno.h"
#include "vdrm_wire.h"

namespace fdnc {

struct RequestStats {
    uint64_t ccmds = 0;   // requests sent (buffered, tunnelled and submits)
    uint64_t batches = 0; // transport calls that carried ccmds
    uint64_t bytes = 0;   // ccmd bytes sent
};

// What this thread's RequestBuffer calls handed to the transport, counted per thread so a caller
// can attribute them to one of its own calls (fdnc-replay's per-bo_new trace counters): read before
// and after, subtract. Plain thread_local increments, no lock.
struct RequestThreadCounters {
    uint64_t transport_calls = 0; // execbuf / create_blob calls made by this thread
    uint64_t flushes = 0;         // of those, flushes of buffered requests
    uint64_t flushed_bytes = 0;   // bytes those flushes carried
    uint64_t transport_ns = 0;    // time spent inside those transport calls (steady_clock)
    uint64_t flush_ns = 0;        // of which inside the flushes' calls
};

class RequestBuffer {
public:
    static const RequestThreadCounters& thread_counters();

    // shmem: the mapped shared page (wire::msm_shmem at its start), shmem_size bytes.
    RequestBuffer(Transport& transport, void* shmem, uint32_t shmem_size);

    // Appends one request (hdr.cmd and hdr.len already set, len a multiple of 4 and <= 16 KiB);
    // fills hdr.seqno and, when rsp_size > 0, hdr.rsp_off (pre-writing the slot's len, R3).
    // Returns the seqno, or 0 on failure (*err = -errno).
    uint32_t enqueue(std::span<uint8_t> req, uint32_t rsp_size = 0, int* err = nullptr);

    // Sends the buffered requests (one execbuf on ring 0, no fence). 0 or -errno.
    int flush();

    // Q4: flush, then create the blob with `req` (e.g. GEM_NEW, seqno assigned here) tunnelled.
    int create_blob(BlobCreateArgs args, std::span<uint8_t> req, uint32_t* handle);

    // Q5: flush, then execbuf `req` alone on ring_idx with an out fence.
    int submit(std::span<uint8_t> req, uint32_t ring_idx, TransportFence* fence, int in_fence_fd = -1);

    // Q6: enqueue with a response slot, flush with a ring-0 fence (where the transport answers
    // one), wait for it, then for shmem.seqno to reach the request; copies the response into rsp. 0 or -errno
    // (-ETIMEDOUT, -EPIPE when the host is gone, -EPROTO when the slot is garbage).
    int send_sync(std::span<uint8_t> req, std::span<uint8_t> rsp, int64_t timeout_ns);

    // Waits until the host has processed every request up to `seqno` (flushing first).
    int wait_seqno(uint32_t seqno, int64_t timeout_ns);

    // The host's progress as written in the shared page (compare with util/seqno.h's seqno_reached).
    uint32_t host_seqno() const;

    RequestStats stats() const;
    Transport& transport() { return transport_; }

    // Shared-page fields, read atomically (the host writes them from its own thread); 0 when an
    // older host's page lacks the field (rsp_mem_offset presence rule, §5.3).
    uint32_t async_error() const;
    uint32_t global_faults() const;
    uint32_t rsp_mem_offset() const { return rsp_mem_offset_; }
    uint32_t rsp_area_size() const { return rsp_area_size_; } // R1: shmem_size - rsp_mem_offset
    size_t buffered_bytes() const;                             // requests not yet flushed
    // 0, or the error of the flush that dropped buffered requests. The host then lacks objects
    // and iovas the guest believes exist, so the stream cannot go on: every later enqueue,
    // flush, blob create, submit or sync call fails with this error (the device is lost).
    int broken() const;

private:
    struct Slot {
        uint32_t off, size;
    };
    uint32_t enqueue_locked(std::span<uint8_t> req, uint32_t rsp_size, uint32_t* rsp_off, int* err);
    uint32_t next_seqno_locked();
    int flush_locked(TransportFence* fence = nullptr);
    uint32_t alloc_rsp_locked(uint32_t size);
    int wait_host(TransportFence fence, uint32_t seqno, int64_t timeout_ns);
    uint32_t shmem_u32(size_t off) const;

    Transport& transport_;
    uint8_t* shmem_;
    uint32_t shmem_size_;
    uint32_t rsp_mem_offset_;
    uint32_t rsp_area_size_ = 0;
    bool ring0_fences_; // TransportInfo::ring0_fences: else sync waits watch the seqno alone

    mutable std::mutex lock_;
    std::vector<uint8_t> buf_;
    int broken_ = 0;
    uint32_t next_seqno_ = 0;
    uint32_t next_rsp_off_ = 0;
    uint32_t buffered_ccmds_ = 0;
    RequestStats stats_;
    std::vector<Slot> reading_; // slots send_sync callers still copy from: never handed out again
};

} // namespace fdnc
