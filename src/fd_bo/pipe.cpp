#include "fd_bo/pipe.h"

#include <algorithm>
#include <cerrno>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "virtio_proto/ccmd_encoder.h"

namespace fdnc {

Pipe::~Pipe() {
    // Everything this pipe submitted must retire before its queue goes away (the host would
    // otherwise keep running work whose bos the quarantine may release).
    const uint32_t last = tl_.last_submitted();
    if (last && !tl_.is_retired(last)) {
        bool blocked = false;
        tl_.wait(dev_->transport(), last, dev_->options().sync_timeout_ns, &blocked);
        if (blocked) dev_->host_waits().count(HostWait::Teardown);
    }
    dev_->pipe_destroyed(this);
}

uint32_t Pipe::next_seqno_locked() {
    // S4: 1..INT32_MAX, then wrap to 1; 0 is never a fence (F7).
    const uint32_t next = tl_.last_submitted() + 1;
    return static_cast<int32_t>(next) <= 0 ? 1 : next;
}

uint32_t Pipe::poll_retired() { return tl_.poll(dev_->transport()); }

int Pipe::wait(uint32_t fence, int64_t timeout_ns) {
    bool blocked = false;
    int ret = tl_.wait(dev_->transport(), fence, timeout_ns, &blocked);
    if (blocked) dev_->host_waits().count(HostWait::PipeWait);
    return ret;
}

bool FenceTimeline::is_retired(uint32_t fence) const {
    const uint32_t last = last_.load(std::memory_order_acquire);
    if (last == 0) return true;
    // A seqno after the last submitted one was never submitted here: nothing to wait for.
    if (!seqno_reached(last, fence)) return true;
    const uint32_t r = retired_.load(std::memory_order_acquire);
    return r != 0 && seqno_reached(r, fence);
}

void FenceTimeline::push(uint32_t seqno, TransportFence f) {
    std::lock_guard<std::mutex> g(lock_);
    inflight_.push_back({seqno, f});
    last_.store(seqno, std::memory_order_release);
}

uint32_t FenceTimeline::poll(Transport& t) {
    std::lock_guard<std::mutex> g(lock_);
    while (!inflight_.empty()) {
        // Points of one ring retire in order, so stop at the first that has not.
        if (t.wait_fence(inflight_.front().fence, 0) != 0) break;
        retired_.store(inflight_.front().seqno, std::memory_order_release);
        inflight_.pop_front();
    }
    return retired_.load(std::memory_order_acquire);
}

int FenceTimeline::wait(Transport& t, uint32_t fence, int64_t timeout_ns, bool* blocked) {
    if (blocked) *blocked = false;
    if (fence == 0) return -EINVAL;
    const uint32_t last = last_.load(std::memory_order_acquire);
    if (last == 0 || !seqno_reached(last, fence)) return -EINVAL; // never submitted (cf. 2.9)
    if (is_retired(fence)) return 0;
    poll(t);
    if (is_retired(fence)) return 0;
    TransportFence target;
    {
        std::lock_guard<std::mutex> g(lock_);
        for (const InFlight& f : inflight_) {
            if (seqno_reached(f.seqno, fence)) {
                target = f.fence;
                break;
            }
        }
    }
    if (!target) return 0; // retired meanwhile
    if (blocked) *blocked = true;
    int ret = t.wait_fence(target, timeout_ns < 0 ? INT64_MAX : timeout_ns);
    if (ret < 0) return ret;
    poll(t);
    return 0;
}

Submit::~Submit() {
    for (Bo* bo : refs_) bo->unref();
}

int Submit::add_bo(Bo* bo, uint32_t flags) {
    if (!bo || flags & ~wire::MSM_SUBMIT_BO_FLAGS) return -EINVAL;
    if (flushed_) return -EBUSY;
    if (&bo->device() != &pipe_->device()) return -EXDEV;
    refs_.push_back(bo->ref());
    Bo* b = bo->backing();
    auto [it, inserted] = index_.try_emplace(b, static_cast<uint32_t>(table_.size()));
    if (inserted) {
        table_.push_back(b);
        table_flags_.push_back(flags);
    } else {
        table_flags_[it->second] |= flags;
    }
    return static_cast<int>(it->second);
}

int Submit::add_cmd(Bo* bo, uint64_t offset, uint64_t size) {
    if (!bo || size == 0 || (size & 3) || offset > bo->size() || size > bo->size() - offset) return -EINVAL;
    int idx = add_bo(bo, wire::MSM_SUBMIT_BO_READ);
    if (idx < 0) return idx;
    wire::drm_msm_gem_submit_cmd c{};
    c.type = wire::MSM_SUBMIT_CMD_BUF;
    c.submit_idx = static_cast<uint32_t>(idx);
    c.submit_offset = static_cast<uint32_t>(bo->backing_offset() + offset);
    c.size = static_cast<uint32_t>(size);
    cmds_.push_back(c); // S2: pad 0, nr_relocs 0
    return 0;
}

int Submit::flush(uint32_t* fence) {
    if (flushed_) return -EBUSY;
    Device& dev = pipe_->device();
    if (dev.status() != 0) return -EIO;
    std::vector<wire::drm_msm_gem_submit_bo> bos(table_.size());
    for (size_t i = 0; i < table_.size(); i++) {
        uint32_t res_id = 0;
        int ret = dev.resolve_res_id(table_[i], &res_id);
        if (ret < 0) return ret;
        bos[i].flags = table_flags_[i];
        bos[i].handle = res_id;
        // The iova the guest believes the bo has; the host model checks it for the whole
        // execution window, which is how a stale or unmapped reference becomes a counted fault.
        bos[i].presumed = table_[i]->iova();
    }
    std::lock_guard<std::mutex> g(pipe_->submit_lock());
    const uint32_t seqno = pipe_->next_seqno_locked();
    auto req = ccmd::gem_submit(wire::MSM_PIPE_3D0, pipe_->id(), seqno, bos, cmds_);
    TransportFence tf;
    int ret = dev.requests().submit(req.span(), pipe_->ring_idx(), &tf);
    if (ret < 0) return ret;
    {
        // Record the fence on every bo before the pipe publishes it, so a concurrent free of one
        // of these bos always sees a fence it must wait for.
        std::lock_guard<std::mutex> fg(dev.fence_lock());
        const FencePoint fp{pipe_->slot(), seqno};
        for (Bo* bo : refs_) bo->add_fence(fp);
        for (Bo* bo : table_) bo->add_fence(fp);
    }
    pipe_->timeline().push(seqno, tf);
    dev.count_submit();
    flushed_ = true;
    if (fence) *fence = seqno;
    return 0;
}

} // namespace fdnc
