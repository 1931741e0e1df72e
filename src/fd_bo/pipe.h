// Pipe (a submitqueue on one ring) and Submit (Mesa's fd_pipe / fd_submit). A pipe numbers its
// submits itself (FENCE_SN_IN, S4). Which of them retired is kept in the pipe's FenceTimeline, a
// per-slot object the device owns for its whole life: bos, the cache and the quarantine look at
// timelines, never at pipes, so deleting a pipe while other threads still check old fences is safe.
// Retirement is learned by polling transport fences, so no thread per pipe is needed.
#pragma once

#include <atomic>
#include <cstdint>
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

// The submits of one pipe slot and how far they retired. Seqnos continue across the pipes that
// use the slot one after another, so the quarantine's per-ring order stays valid.
class FenceTimeline {
public:
    // True once `fence` retired (or was never submitted on this slot).
    bool is_retired(uint32_t fence) const;
    // Non-blocking: polls transport fences in order; returns the newest retired seqno (0 = none).
    uint32_t poll(Transport& t);
    // Waits for `fence`. 0, -ETIMEDOUT, -EINVAL (never submitted), -EPIPE (host gone).
    int wait(Transport& t, uint32_t fence, int64_t timeout_ns, bool* blocked);
    uint32_t retired() const { return retired_.load(std::memory_order_acquire); }
    uint32_t last_submitted() const { return last_.load(std::memory_order_acquire); }
    bool idle() const { return retired() == last_submitted(); }
    void push(uint32_t seqno, TransportFence f);

private:
    struct InFlight {
        uint32_t seqno;
        TransportFence fence;
    };
    mutable std::mutex lock_;
    std::deque<InFlight> inflight_;
    std::atomic<uint32_t> retired_{0};
    std::atomic<uint32_t> last_{0};
};

class Pipe {
public:
    ~Pipe(); // drains its submits first
    uint32_t id() const { return queue_id_; } // host submitqueue id
    uint32_t slot() const { return slot_; }   // ring key of this pipe's fences (0..kMaxPipes-1)
    uint32_t prio() const { return prio_; }
    uint32_t ring_idx() const { return prio_ + 1; } // F1
    Device& device() { return *dev_; }
    FenceTimeline& timeline() { return tl_; }

    // 0 once `fence` retired, -ETIMEDOUT, -EINVAL for a fence never submitted, -EPIPE host gone.
    int wait(uint32_t fence, int64_t timeout_ns);
    uint32_t poll_retired();
    bool is_retired(uint32_t fence) const { return tl_.is_retired(fence); }
    uint32_t last_submitted() const { return tl_.last_submitted(); }

    // --- core-private ---
    std::mutex& submit_lock() { return submit_lock_; }
    uint32_t next_seqno_locked();

private:
    friend class Device;
    Pipe(Device* dev, uint32_t queue_id, uint32_t prio, uint32_t slot, FenceTimeline& tl)
        : dev_(dev), queue_id_(queue_id), prio_(prio), slot_(slot), tl_(tl) {}

    Device* dev_;
    uint32_t queue_id_;
    uint32_t prio_;
    uint32_t slot_;
    FenceTimeline& tl_;
    std::mutex submit_lock_; // seqno order == wire order
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
