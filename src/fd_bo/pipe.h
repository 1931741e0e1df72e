// Pipe (a submitqueue on one ring) and Submit (Mesa's fd_pipe / fd_submit). A pipe numbers its
// submits itself (FENCE_SN_IN, S4) and tracks which have retired by polling their transport
// fences, so no thread per pipe is needed: waiting happens only when a caller asks for it.
#pragma once

#include <cstdint>
#include <atomic>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fd_bo/fence_point.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/transport.h"

namespace fdnc {

class Bo;
class Device;

class Pipe {
public:
    ~Pipe();
    uint32_t id() const { return queue_id_; } // host submitqueue id
    uint32_t slot() const { return slot_; }   // ring key of this pipe's fences (0..kMaxPipes-1)
    uint32_t prio() const { return prio_; }
    uint32_t ring_idx() const { return prio_ + 1; } // F1
    Device& device() { return *dev_; }

    // 0 once `fence` retired, -ETIMEDOUT, -EINVAL for a fence never submitted, -EPIPE host gone.
    int wait(uint32_t fence, int64_t timeout_ns);
    // Non-blocking: polls transport fences and returns the newest retired seqno (0 = none yet).
    uint32_t poll_retired();
    uint32_t retired() const { return retired_.load(std::memory_order_acquire); }
    uint32_t last_submitted() const { return last_fence_.load(std::memory_order_acquire); }
    bool is_retired(uint32_t fence) const;

    // --- core-private ---
    // wait() without counting a host wait (the caller counts it under its own reason).
    int wait_internal(uint32_t fence, int64_t timeout_ns, bool* blocked = nullptr);
    struct InFlight {
        uint32_t seqno;
        TransportFence fence;
    };
    uint32_t next_seqno_locked();
    void push_inflight(uint32_t seqno, TransportFence f);
    std::mutex& submit_lock() { return submit_lock_; }

private:
    friend class Device;
    Pipe(Device* dev, uint32_t queue_id, uint32_t prio, uint32_t slot, uint32_t first_seqno)
        : dev_(dev), queue_id_(queue_id), prio_(prio), slot_(slot), next_seqno_(static_cast<int32_t>(first_seqno)), retired_(first_seqno - 1) {}

    Device* dev_;
    uint32_t queue_id_;
    uint32_t prio_;
    uint32_t slot_;
    std::mutex submit_lock_; // seqno order == wire order
    int32_t next_seqno_;
    std::mutex inflight_lock_;
    std::deque<InFlight> inflight_;
    // Starts at the slot's previous last seqno, so fences of an earlier pipe in this slot read
    // as retired (that pipe drained before it went away).
    std::atomic<uint32_t> retired_;
    std::atomic<uint32_t> last_fence_{0};
};

class Submit {
public:
    explicit Submit(Pipe* pipe) : pipe_(pipe) {}
    ~Submit();
    // Adds a bo (deduplicated; flags OR-ed). Returns its table index.
    int add_bo(Bo* bo, uint32_t flags);
    // A command buffer range inside bo (type MSM_SUBMIT_CMD_BUF).
    int add_cmd(Bo* bo, uint64_t offset, uint64_t size);
    // Sends it after every request queued before it (Q5). *fence = the pipe seqno.
    int flush(uint32_t* fence);
    Pipe& pipe() { return *pipe_; }

private:
    Pipe* pipe_;
    std::vector<Bo*> refs_;     // every bo the client added, referenced until the submit is deleted
    std::vector<Bo*> table_;    // the bo table: backing bos (heap blocks for suballocated bos)
    std::vector<uint32_t> table_flags_;
    std::unordered_map<Bo*, uint32_t> index_; // backing bo -> table index (dedupe)
    std::vector<wire::drm_msm_gem_submit_cmd> cmds_;
    bool flushed_ = false;
};

} // namespace fdnc
