#include "host_sim/msm_kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_sim/msm_kernel_internal.h"

namespace fdnc::host {

using namespace fdnc::wire;
using namespace kernel_detail;

// ---------------------------------------------------------------------------------------------
// submitqueues

int MsmKernel::submitqueue_new_call(FileId f, drm_msm_submitqueue& a) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (a.flags & ~MSM_SUBMITQUEUE_ALLOW_PREEMPT)
        return -EINVAL;
    if ((a.flags & MSM_SUBMITQUEUE_ALLOW_PREEMPT) && !cfg_.gpu.has_preemption)
        return -EINVAL;
    if (a.prio >= cfg_.gpu.priorities) // msm_gpu_convert_priority
        return -EINVAL;
    auto q = std::make_shared<Queue>();
    q->id = file->next_queue++;
    q->prio = a.prio;
    q->flags = a.flags;
    file->queues[q->id] = q;
    a.id = q->id;
    return 0;
}

int MsmKernel::submitqueue_close_call(FileId f, uint32_t id) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (id == 0) // the default queue cannot be removed
        return -ENOENT;
    // Unretired submits keep the queue object alive; the id is gone at once.
    return file->queues.erase(id) ? 0 : -ENOENT;
}

int MsmKernel::submitqueue_query_call(FileId f, drm_msm_submitqueue_query& a, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (a.pad)
        return -EINVAL;
    auto it = file->queues.find(a.id);
    if (it == file->queues.end())
        return -ENOENT;
    if (a.param != MSM_SUBMITQUEUE_PARAM_FAULTS)
        return -EINVAL;
    uint32_t faults = it->second->faults;
    if (a.len == 0) {
        a.len = sizeof(faults); // "tell me the size" (not copied back: the ioctl is _IOW)
        return 0;
    }
    uint32_t n = std::min<uint32_t>(a.len, sizeof(faults));
    if (data.size() < n)
        return -EFAULT;
    std::memcpy(data.data(), &faults, n);
    a.len = n;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// submit, fences, the GPU clock

int MsmKernel::gem_submit_call(FileId f, drm_msm_gem_submit& a, std::span<const drm_msm_gem_submit_bo> bos,
                          std::span<const drm_msm_gem_submit_cmd> cmds, uint64_t* submit_seq) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (cfg_.clock == ClockMode::RealTime)
        retire_due_locked(now_locked());
    if (a.pad)
        return -EINVAL;
    if ((a.flags & MSM_PIPE_ID_MASK) != MSM_PIPE_3D0)
        return -EINVAL;
    if ((a.flags & ~MSM_PIPE_ID_MASK) & ~MSM_SUBMIT_FLAGS)
        return -EINVAL;
    if (a.flags & MSM_SUBMIT_SUDO) // needs CAP_SYS_RAWIO + a debug kernel
        return -EINVAL;
    auto qit = file->queues.find(a.queueid);
    if (qit == file->queues.end())
        return -ENOENT;
    std::shared_ptr<Queue> q = qit->second;
    if ((a.flags & MSM_SUBMIT_FENCE_FD_IN) && a.fence_fd < 0)
        return -EINVAL; // sync_file_get_fence() fails
    if (((a.flags & MSM_SUBMIT_SYNCOBJ_IN) && a.nr_in_syncobjs) ||
        ((a.flags & MSM_SUBMIT_SYNCOBJ_OUT) && a.nr_out_syncobjs))
        return -EINVAL; // the model has no syncobjs
    if (bos.size() != a.nr_bos || cmds.size() != a.nr_cmds)
        return -EFAULT;

    auto s = std::make_unique<Submit>();
    s->file = f;
    s->queue = q;
    // submit_lookup_objects: flag check, handle lookup (-EINVAL), each object once.
    std::set<const Object*> seen;
    for (uint32_t i = 0; i < a.nr_bos; i++) {
        const auto& b = bos[i];
        if ((b.flags & ~MSM_SUBMIT_BO_FLAGS) || !(b.flags & (MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE)))
            return -EINVAL;
        Object* obj = lookup_locked(*file, b.handle);
        if (!obj)
            return -EINVAL; // "invalid handle %u at index %u"
        if (!seen.insert(obj).second)
            return -EINVAL; // "already on submit list"
        s->bos.push_back({obj, b.flags, b.presumed});
    }
    // submit_lookup_cmds + the per-cmd checks of msm_ioctl_gem_submit.
    for (const auto& c : cmds) {
        if (c.type != MSM_SUBMIT_CMD_BUF && c.type != MSM_SUBMIT_CMD_IB_TARGET_BUF &&
            c.type != MSM_SUBMIT_CMD_CTX_RESTORE_BUF)
            return -EINVAL;
        if (c.size % 4 || c.submit_offset % 4)
            return -EINVAL;
        if (c.nr_relocs) // a6xx: relocs not allowed
            return -EINVAL;
        if (c.submit_idx >= a.nr_bos)
            return -EINVAL; // "invalid buffer index"
        const Object* obj = s->bos[c.submit_idx].obj;
        if (c.size == 0 || uint64_t(c.submit_offset) + c.size > obj->size)
            return -EINVAL; // "invalid cmdstream size"
    }
    if (a.flags & MSM_SUBMIT_FENCE_SN_IN) {
        // F7 / §2.8: non-zero and not an unretired fence of this queue.
        if (a.fence == 0 || q->unretired.count(a.fence))
            return -EINVAL;
    }
    if (int e = injected_locked(KernelOp::Submit, f))
        return e;
    // submit_pin_objects: a bo without a vma gets a kernel-chosen iova now (§12.3).
    for (auto& bo : s->bos) {
        uint64_t iova = 0;
        if (int e = get_vma_locked(*file, *bo.obj, 0, UINT64_MAX, &iova))
            return e;
    }
    uint32_t fence;
    if (a.flags & MSM_SUBMIT_FENCE_SN_IN) {
        fence = a.fence;
    } else {
        do {
            q->next_fence = (q->next_fence % 0x7fffffffu) + 1; // cyclic in 1..INT_MAX
        } while (q->unretired.count(q->next_fence));
        fence = q->next_fence;
    }
    a.fence = fence;
    if (a.flags & MSM_SUBMIT_FENCE_FD_OUT)
        a.fence_fd = -1; // no sync_file in the model: track (queue, fence) instead
    s->fence = fence;
    q->last_fence = fence;
    for (auto& bo : s->bos) {
        bo.obj->refs++;
        bo.obj->pins[f]++;
        if (bo.flags & MSM_SUBMIT_BO_WRITE)
            bo.obj->writers++;
        else
            bo.obj->readers++;
    }
    uint64_t now = now_locked();
    uint64_t start = std::max(now, ring_busy_until_);
    s->due_us = start + (cfg_.gpu_exec_us_fn ? cfg_.gpu_exec_us_fn() : cfg_.gpu_exec_us);
    ring_busy_until_ = s->due_us;
    // Fault check at queue time: each bo mapped at exactly the presumed iova.
    for (auto& bo : s->bos) {
        uint64_t iova = bo.obj->vmas[f].iova;
        if (bo.presumed == 0) {
            if (cfg_.require_presumed)
                fault_locked(*s, iova, "bo entry without a presumed iova");
        } else if (iova != bo.presumed) {
            fault_locked(*s, bo.presumed, "bo not mapped at its presumed iova");
        }
    }
    s->seq = next_seq_++;
    if (submit_seq)
        *submit_seq = s->seq;
    q->unretired[fence] = s.get();
    file->pending++;
    if (cfg_.retire_at_submit && cfg_.clock == ClockMode::RealTime && ring_.empty() && s->due_us <= now) {
        // Done the moment it is queued (no GPU time, nothing ahead): retired here, by the thread
        // that submitted it, instead of waking the GPU thread for it. No event: the owner reads
        // retire state itself (KernelConfig::retire_at_submit). Nobody can wait on this fence
        // yet and every older one has retired, so nobody is woken either.
        retire_one_locked(*s, false);
        return 0;
    }
    ring_.push_back(std::move(s));
    lk.unlock();
    cv_.notify_all();
    return 0;
}

bool MsmKernel::queue_fence_signaled_locked(const Queue& q, uint32_t fence) const {
    return q.unretired.count(fence) == 0;
}

int MsmKernel::wait_fence_call(FileId f, const drm_msm_wait_fence& a) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    uint32_t valid = cfg_.drm_minor >= 11 ? MSM_WAIT_FENCE_BOOST : 0;
    if (a.flags & ~valid)
        return -EINVAL;
    auto qit = file->queues.find(a.queueid);
    if (qit == file->queues.end())
        return -ENOENT;
    std::shared_ptr<Queue> q = qit->second;
    if (seqno_after(a.fence, q->last_fence))
        return -EINVAL; // "waiting on invalid fence"
    auto signaled = [&] {
        if (cfg_.clock == ClockMode::RealTime)
            retire_due_locked(now_locked());
        return queue_fence_signaled_locked(*q, a.fence);
    };
    if (signaled())
        return 0;
    int64_t deadline = timespec_ns(a.timeout);
    if (cfg_.clock == ClockMode::Manual || deadline <= static_cast<int64_t>(mono_ns()))
        return -ETIMEDOUT;
    auto tp = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline));
    while (!signaled()) {
        if (cv_.wait_until(lk, tp) == std::cv_status::timeout && !signaled())
            return -ETIMEDOUT;
    }
    return 0;
}

uint64_t MsmKernel::now_locked() const {
    if (cfg_.clock == ClockMode::Manual)
        return manual_now_;
    return (mono_ns() - epoch_ns_) / 1000;
}

uint64_t MsmKernel::now_us() const {
    std::lock_guard lk(mu_);
    return now_locked();
}

void MsmKernel::retire_one_locked(Submit& s, bool event) {
    for (auto& bo : s.bos) {
        Object& o = *bo.obj;
        if (bo.flags & MSM_SUBMIT_BO_WRITE)
            o.writers--;
        else
            o.readers--;
        auto p = o.pins.find(s.file);
        if (p != o.pins.end() && --p->second == 0) {
            o.pins.erase(p);
            if (o.release_when_idle.erase(s.file))
                remove_vma_locked(s.file, o, "GEM_CLOSE (VM_BIND era), now idle");
        }
    }
    s.queue->unretired.erase(s.fence);
    retired_seq_ = s.seq;
    if (event)
        events_.push_back({s.file, s.queue->id, s.fence, s.faulted});
    // Drop the submit's object references last: freeing releases vmas (and checks other submits).
    for (auto& bo : s.bos)
        unref_locked(*bo.obj);
    auto fit = files_.find(s.file);
    if (fit != files_.end()) {
        fit->second->pending--;
        maybe_destroy_file_locked(s.file);
    }
}

void MsmKernel::retire_due_locked(uint64_t now) {
    bool any = false;
    while (!ring_.empty() && ring_.front()->due_us <= now) {
        std::unique_ptr<Submit> s = std::move(ring_.front());
        ring_.pop_front();
        retire_one_locked(*s);
        any = true;
    }
    if (any)
        cv_.notify_all();
}

void MsmKernel::deliver_events(std::unique_lock<std::mutex>& lk) {
    if (events_.empty())
        return;
    auto events = std::move(events_);
    events_.clear();
    auto listener = listener_;
    lk.unlock();
    if (listener)
        listener(events);
    lk.lock();
}

void MsmKernel::advance(uint64_t us) {
    std::unique_lock lk(mu_);
    if (cfg_.clock == ClockMode::Manual)
        manual_now_ += us;
    retire_due_locked(now_locked());
    deliver_events(lk);
}

void MsmKernel::retire_all() {
    std::unique_lock lk(mu_);
    while (!ring_.empty()) {
        if (cfg_.clock == ClockMode::Manual)
            manual_now_ = std::max(manual_now_, ring_.front()->due_us);
        std::unique_ptr<Submit> s = std::move(ring_.front());
        ring_.pop_front();
        retire_one_locked(*s);
    }
    cv_.notify_all();
    deliver_events(lk);
}

void MsmKernel::gpu_thread_main() {
    std::unique_lock lk(mu_);
    while (!stop_) {
        retire_due_locked(now_locked());
        deliver_events(lk);
        if (stop_)
            break;
        if (!events_.empty())
            continue;
        if (ring_.empty()) {
            cv_.wait(lk);
        } else {
            auto due = std::chrono::steady_clock::time_point(
                std::chrono::nanoseconds(epoch_ns_ + ring_.front()->due_us * 1000));
            cv_.wait_until(lk, due);
        }
    }
}

size_t MsmKernel::pending_submits() const {
    std::lock_guard lk(mu_);
    return ring_.size();
}

bool MsmKernel::fence_retired(FileId f, uint32_t queue_id, uint32_t fence) const {
    std::lock_guard lk(mu_);
    for (auto& s : ring_)
        if (s->file == f && s->queue->id == queue_id && s->fence == fence)
            return false;
    return true;
}

bool MsmKernel::submit_retired(uint64_t seq) const {
    std::lock_guard lk(mu_);
    return seq <= retired_seq_;
}

void MsmKernel::set_fail_hook(std::function<int(KernelOp, FileId)> hook) {
    std::lock_guard lk(mu_);
    cfg_.fail_hook = std::move(hook);
}

void MsmKernel::set_retire_listener(std::function<void(const std::vector<RetiredSubmit>&)> l) {
    std::lock_guard lk(mu_);
    listener_ = std::move(l);
}

} // namespace fdnc::host
