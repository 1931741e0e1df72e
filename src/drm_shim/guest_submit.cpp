// GuestBackend: submitqueues, GEM_SUBMIT, WAIT_FENCE and CPU_PREP, on fd_bo's Pipe and Submit.
// A kernel fence is the pipe's own seqno (Submit::flush), so WAIT_FENCE needs no translation.
#include <cerrno>
#include <ctime>
#include <poll.h>
#include <unistd.h>

#include "fd_bo/bo.h"
#include "fd_bo/pipe.h"
#include "guest_backend.h"
#include "util/seqno.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/msm_uapi.h"

namespace fdnc::shim {

using namespace fdnc::wire;

namespace {

template <typename T> T* user_ptr(uint64_t p) { return reinterpret_cast<T*>(static_cast<uintptr_t>(p)); }

// msm timeouts are absolute CLOCK_MONOTONIC times; fd_bo takes a relative bound (0 = poll).
int64_t relative_ns(const drm_msm_timespec& abs) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const __int128 deadline = static_cast<__int128>(abs.tv_sec) * 1'000'000'000 + abs.tv_nsec;
    const __int128 left = deadline - (static_cast<__int128>(now.tv_sec) * 1'000'000'000 + now.tv_nsec);
    if (left <= 0)
        return 0;
    return left > INT64_MAX / 2 ? -1 : static_cast<int64_t>(left); // "forever" (OS_TIMEOUT_INFINITE)
}

} // namespace

GuestBackend::Queue::~Queue() { delete pipe; }

std::shared_ptr<GuestBackend::Queue> GuestBackend::queue(File& f, uint32_t id, int* err) {
    {
        std::lock_guard fl(f.mu);
        auto it = f.queues.find(id);
        if (it != f.queues.end())
            return it->second;
    }
    if (id != 0) {
        *err = -ENOENT;
        return nullptr;
    }
    // Queue 0 is the one the kernel opens with the file (priority 1 when there are two or more);
    // made on first use, since a driver with submitqueues never touches it.
    const uint32_t prio = dev_->priorities() > 1 ? 1 : 0;
    Pipe* p = dev_->pipe_new(prio, err);
    if (!p)
        return nullptr;
    auto q = std::make_shared<Queue>();
    q->pipe = p;
    std::lock_guard fl(f.mu);
    auto [it, inserted] = f.queues.try_emplace(0, q);
    return it->second; // another thread's queue 0 wins; ours goes with `q`
}

int GuestBackend::submitqueue_new(File& f, void* arg) {
    auto* a = static_cast<drm_msm_submitqueue*>(arg);
    uint32_t valid = 0;
    if (caps_.u.msm.has_preemption == VIRTGPU_CAP_BOOL_TRUE)
        valid |= MSM_SUBMITQUEUE_ALLOW_PREEMPT;
    if (a->flags & ~valid)
        return -EINVAL; // what Mesa's open_submitqueue retries without
    if (a->prio >= dev_->priorities())
        return -EINVAL;
    int err = 0;
    Pipe* p = dev_->pipe_new(a->prio, &err);
    if (!p)
        return err ? err : -ENOMEM;
    auto q = std::make_shared<Queue>();
    q->pipe = p;
    std::lock_guard fl(f.mu);
    a->id = f.next_queue++;
    f.queues[a->id] = std::move(q);
    return 0;
}

int GuestBackend::submitqueue_close(File& f, void* arg) {
    const uint32_t id = *static_cast<uint32_t*>(arg);
    std::shared_ptr<Queue> q;
    {
        std::lock_guard fl(f.mu);
        auto it = f.queues.find(id);
        if (it == f.queues.end())
            return -ENOENT;
        q = std::move(it->second);
        f.queues.erase(it);
    }
    return 0; // `q` goes here or with the last ioctl still using it
}

int GuestBackend::submitqueue_query(File& f, void* arg) {
    auto* a = static_cast<drm_msm_submitqueue_query*>(arg);
    if (a->pad)
        return -EINVAL;
    int err = 0;
    auto q = queue(f, a->id, &err);
    if (!q)
        return err;
    if (a->param != MSM_SUBMITQUEUE_PARAM_FAULTS)
        return -EINVAL;
    if (a->len == 0) {
        a->len = sizeof(uint32_t); // the size query
        return 0;
    }
    if (!a->data)
        return -EFAULT;
    // The host's count for the host queue: one synchronous request (Mesa's virtio backend too).
    const uint32_t len = a->len < 8 ? a->len : 8;
    auto req = ccmd::submitqueue_query(q->pipe->id(), a->param, len);
    std::vector<uint8_t> rsp(req.rsp_size);
    int r = dev_->requests().send_sync(req.span(), rsp, dev_->options().sync_timeout_ns);
    dev_->host_waits().count(HostWait::SyncRequest);
    if (r < 0)
        return r;
    int32_t host_ret = 0;
    if (!ccmd::parse_ret(rsp, &host_ret) || rsp.size() < sizeof(msm_ccmd_submitqueue_query_rsp))
        return -EPROTO;
    if (host_ret)
        return host_ret;
    const auto* h = reinterpret_cast<const msm_ccmd_submitqueue_query_rsp*>(rsp.data());
    const uint32_t out = h->out_len < len ? h->out_len : len;
    const uint8_t* payload = rsp.data() + sizeof(msm_ccmd_submitqueue_query_rsp);
    if (rsp.size() < sizeof(msm_ccmd_submitqueue_query_rsp) + out)
        return -EPROTO;
    std::copy_n(payload, out, user_ptr<uint8_t>(a->data));
    a->len = out;
    return 0;
}

int GuestBackend::submit(File& f, void* arg) {
    auto* a = static_cast<drm_msm_gem_submit*>(arg);
    if (a->pad || (a->flags & MSM_PIPE_ID_MASK) != MSM_PIPE_3D0 || ((a->flags & ~MSM_PIPE_ID_MASK) & ~MSM_SUBMIT_FLAGS))
        return -EINVAL;
    if (a->flags & MSM_SUBMIT_SUDO)
        return -EPERM;
    if (a->flags & (MSM_SUBMIT_SYNCOBJ_IN | MSM_SUBMIT_SYNCOBJ_OUT))
        return -EOPNOTSUPP; // DRM_CAP_SYNCOBJ is 0
    if (a->flags & MSM_SUBMIT_FENCE_SN_IN)
        return -EINVAL; // fd_bo numbers its submits itself
    if ((a->nr_bos && !a->bos) || (a->nr_cmds && !a->cmds))
        return -EFAULT;
    int err = 0;
    auto q = queue(f, a->queueid, &err);
    if (!q)
        return err;
    const auto* sbos = user_ptr<const drm_msm_gem_submit_bo>(a->bos);
    const auto* scmds = user_ptr<const drm_msm_gem_submit_cmd>(a->cmds);
    for (uint32_t i = 0; i < a->nr_cmds; i++) {
        const auto& c = scmds[i];
        if (c.type != MSM_SUBMIT_CMD_BUF || c.nr_relocs || c.submit_idx >= a->nr_bos || (c.size & 3) ||
            (c.submit_offset & 3) || c.size == 0)
            return -EINVAL;
    }
    if (a->flags & MSM_SUBMIT_FENCE_FD_IN) {
        // No transport carries a foreign sync_file to the host, so the CPU waits for it here,
        // bounded (what the GPU would have waited for before running this submit).
        if (a->fence_fd < 0)
            return -EINVAL;
        pollfd p{a->fence_fd, POLLIN, 0};
        const int ms = static_cast<int>(dev_->options().sync_timeout_ns / 1'000'000);
        int n;
        do {
            n = ::poll(&p, 1, ms);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            return -ETIMEDOUT;
        if (n < 0)
            return -errno;
    }

    std::vector<Bo*> held;
    held.reserve(a->nr_bos);
    auto drop = [&] {
        for (Bo* bo : held)
            release(bo);
    };
    Submit s(q->pipe);
    std::vector<int> index(a->nr_bos);
    for (uint32_t i = 0; i < a->nr_bos; i++) {
        const auto& b = sbos[i];
        if ((b.flags & ~MSM_SUBMIT_BO_FLAGS) || !(b.flags & (MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE))) {
            drop();
            return -EINVAL;
        }
        Bo* bo = hold(f, b.handle);
        if (!bo) {
            drop();
            return -EINVAL; // "invalid handle %u at index %u"
        }
        held.push_back(bo);
        index[i] = s.add_bo(bo, b.flags);
        if (index[i] < 0 || static_cast<uint32_t>(index[i]) != i) {
            drop();
            return -EINVAL; // a bo twice in the table ("already on submit list")
        }
    }
    for (uint32_t i = 0; i < a->nr_cmds; i++) {
        const auto& c = scmds[i];
        if (int r = s.add_cmd(held[c.submit_idx], c.submit_offset, c.size); r < 0) {
            drop();
            return r;
        }
    }
    uint32_t fence = 0;
    int r = s.flush(&fence);
    drop(); // the Submit holds its own references until it goes
    if (r < 0)
        return r;
    a->fence = fence;
    if (a->flags & MSM_SUBMIT_FENCE_FD_OUT) {
        int fd = -1;
        if (int e = fence_fds_->create(q->pipe->slot(), fence, &fd))
            return e; // the submit is queued; the kernel also fails late on fd exhaustion
        a->fence_fd = fd;
    }
    return 0;
}

int GuestBackend::wait_fence(File& f, void* arg) {
    auto* a = static_cast<drm_msm_wait_fence*>(arg);
    const uint32_t valid = caps_.version_minor >= 11 ? MSM_WAIT_FENCE_BOOST : 0;
    if (a->flags & ~valid)
        return -EINVAL;
    int err = 0;
    auto q = queue(f, a->queueid, &err);
    if (!q)
        return err;
    if (seqno_after(a->fence, q->pipe->last_submitted()))
        return -EINVAL; // "waiting on invalid fence"
    if (a->fence == 0 || q->pipe->is_retired(a->fence))
        return 0;
    return q->pipe->wait(a->fence, relative_ns(a->timeout));
}

int GuestBackend::cpu_prep(File& f, void* arg) {
    auto* a = static_cast<drm_msm_gem_cpu_prep*>(arg);
    if (a->op & ~MSM_PREP_FLAGS)
        return -EINVAL;
    Bo* bo = hold(f, a->handle);
    if (!bo)
        return -ENOENT;
    int r = bo->cpu_prep(nullptr, a->op & ~MSM_PREP_BOOST, relative_ns(a->timeout));
    release(bo);
    return r;
}

} // namespace fdnc::shim
