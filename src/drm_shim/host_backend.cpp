#include "host_backend.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <libdrm/drm.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "render_node.h"
#include "shim_config.h"

namespace fdnc::shim {

using namespace fdnc::wire;

namespace {

host::KernelConfig kernel_config(const ShimConfig& cfg) {
    host::KernelConfig k;
    k.era = cfg.era;
    k.clock = host::ClockMode::RealTime;
    k.gpu_exec_us = cfg.fence_delay_us;
    if (cfg.memory_limit)
        k.memory_limit = *cfg.memory_limit;
    if (cfg.va_start)
        k.va_start = *cfg.va_start;
    if (cfg.va_size)
        k.va_size = *cfg.va_size;
    return k;
}

template <typename T> std::span<T> user_span(uint64_t ptr, uint64_t len) {
    if (!ptr)
        return {};
    return {reinterpret_cast<T*>(static_cast<uintptr_t>(ptr)), static_cast<size_t>(len)};
}

void signal_fence_fd(int fd) {
    uint64_t one = 1;
    ssize_t n;
    do {
        n = ::write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    ::close(fd);
}

} // namespace

HostBackend::HostBackend(const ShimConfig& cfg) : kernel_(kernel_config(cfg)) {
    kernel_.set_retire_listener([this](const std::vector<host::RetiredSubmit>& r) { on_retired(r); });
}

HostBackend::~HostBackend() {
    kernel_.set_retire_listener({});
    std::lock_guard lk(fence_mu_);
    for (auto& [key, fds] : fence_fds_)
        for (int fd : fds)
            ::close(fd);
}

NodeIdentity HostBackend::identity() const {
    const auto& c = kernel_.config();
    // drivers/gpu/drm/msm/msm_drv.c: name "msm", desc "MSM Snapdragon DRM", date "20130625".
    return {"msm", "20130625", "MSM Snapdragon DRM", static_cast<int>(c.drm_major),
            static_cast<int>(c.drm_minor), static_cast<int>(c.drm_patchlevel)};
}

int HostBackend::open_file(BackendFile* file) {
    *file = kernel_.open_file(true);
    return 0;
}

void HostBackend::close_file(BackendFile file) { kernel_.close_file(static_cast<host::FileId>(file)); }

int HostBackend::ioctl(BackendFile file, unsigned long request, void* arg) {
    auto f = static_cast<host::FileId>(file);
    switch (static_cast<uint32_t>(request)) {
    case DRM_IOCTL_GEM_CLOSE: return kernel_.gem_close(f, static_cast<drm_gem_close*>(arg)->handle);
    case DRM_IOCTL_PRIME_HANDLE_TO_FD: {
        auto* a = static_cast<drm_prime_handle*>(arg);
        if (a->flags & ~(DRM_CLOEXEC | DRM_RDWR))
            return -EINVAL;
        int fd = -1;
        if (int e = kernel_.prime_handle_to_fd(f, a->handle, &fd))
            return e;
        if (!(a->flags & DRM_CLOEXEC))
            fcntl(fd, F_SETFD, 0);
        a->fd = fd;
        return 0;
    }
    case DRM_IOCTL_PRIME_FD_TO_HANDLE: {
        auto* a = static_cast<drm_prime_handle*>(arg);
        return kernel_.prime_fd_to_handle(f, a->fd, &a->handle);
    }
    case DRM_IOCTL_MSM_GET_PARAM: return kernel_.get_param(f, *static_cast<drm_msm_param*>(arg));
    case DRM_IOCTL_MSM_SET_PARAM: {
        auto* p = static_cast<drm_msm_param*>(arg);
        return kernel_.set_param(f, *p, user_span<const uint8_t>(p->value, p->len));
    }
    case DRM_IOCTL_MSM_GEM_NEW: return kernel_.gem_new(f, *static_cast<drm_msm_gem_new*>(arg));
    case DRM_IOCTL_MSM_GEM_INFO: {
        auto* a = static_cast<drm_msm_gem_info*>(arg);
        std::span<uint8_t> user;
        if (a->info == MSM_INFO_SET_NAME || a->info == MSM_INFO_GET_NAME ||
            a->info == MSM_INFO_SET_METADATA || a->info == MSM_INFO_GET_METADATA)
            user = user_span<uint8_t>(a->value, a->len);
        return kernel_.gem_info(f, *a, user);
    }
    case DRM_IOCTL_MSM_GEM_CPU_PREP:
        return kernel_.gem_cpu_prep(f, *static_cast<drm_msm_gem_cpu_prep*>(arg));
    case DRM_IOCTL_MSM_GEM_CPU_FINI:
        return kernel_.gem_cpu_fini(f, static_cast<drm_msm_gem_cpu_fini*>(arg)->handle);
    case DRM_IOCTL_MSM_GEM_SUBMIT: return submit(f, arg);
    case DRM_IOCTL_MSM_WAIT_FENCE: return kernel_.wait_fence(f, *static_cast<drm_msm_wait_fence*>(arg));
    case DRM_IOCTL_MSM_GEM_MADVISE: {
        // Not modelled (no shrinker): every known object is retained.
        auto* a = static_cast<drm_msm_gem_madvise*>(arg);
        if (a->madv != MSM_MADV_WILLNEED && a->madv != MSM_MADV_DONTNEED)
            return -EINVAL;
        drm_msm_gem_info probe{a->handle, MSM_INFO_GET_FLAGS, 0, 0, 0};
        if (int e = kernel_.gem_info(f, probe))
            return e;
        a->retained = 1;
        return 0;
    }
    case DRM_IOCTL_MSM_SUBMITQUEUE_NEW:
        return kernel_.submitqueue_new(f, *static_cast<drm_msm_submitqueue*>(arg));
    case DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE: return kernel_.submitqueue_close(f, *static_cast<uint32_t*>(arg));
    case DRM_IOCTL_MSM_SUBMITQUEUE_QUERY: {
        auto* a = static_cast<drm_msm_submitqueue_query*>(arg);
        return kernel_.submitqueue_query(f, *a, user_span<uint8_t>(a->data, a->len));
    }
    default: break;
    }
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) >= 0xBF && _IOC_NR(request) <= 0xCD)
        return -EOPNOTSUPP; // syncobjs (see the header)
    return -EINVAL; // drm_ioctl: unknown ioctl
}

int HostBackend::submit(host::FileId f, void* arg) {
    auto* a = static_cast<drm_msm_gem_submit*>(arg);
    auto bos = user_span<const drm_msm_gem_submit_bo>(a->bos, a->nr_bos);
    auto cmds = user_span<const drm_msm_gem_submit_cmd>(a->cmds, a->nr_cmds);
    if ((a->nr_bos && !a->bos) || (a->nr_cmds && !a->cmds))
        return -EFAULT;
    bool want_fd = a->flags & MSM_SUBMIT_FENCE_FD_OUT;
    if (int e = kernel_.gem_submit(f, *a, bos, cmds))
        return e;
    if (want_fd) {
        int fd = -1;
        if (int e = out_fence(f, a->queueid, a->fence, &fd))
            return e; // the submit is queued; the kernel also fails late on fd exhaustion
        a->fence_fd = fd;
    }
    return 0;
}

int HostBackend::out_fence(host::FileId f, uint32_t queue, uint32_t fence, int* fd) {
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    int ours = fcntl(efd, F_DUPFD_CLOEXEC, 0);
    if (ours < 0) {
        int e = -errno;
        ::close(efd);
        return e;
    }
    {
        // Registered under fence_mu_ and checked against the model afterwards: a retire that
        // happened before registration is seen here, one after it in on_retired().
        std::lock_guard lk(fence_mu_);
        if (!kernel_.fence_retired(f, queue, fence)) {
            fence_fds_[{f, queue, fence}].push_back(ours);
            ours = -1;
        }
    }
    if (ours >= 0)
        signal_fence_fd(ours);
    *fd = efd;
    return 0;
}

void HostBackend::on_retired(const std::vector<host::RetiredSubmit>& retired) {
    std::vector<int> ready;
    {
        std::lock_guard lk(fence_mu_);
        for (const auto& r : retired) {
            auto it = fence_fds_.find({r.file, r.queue_id, r.fence});
            if (it == fence_fds_.end())
                continue;
            ready.insert(ready.end(), it->second.begin(), it->second.end());
            fence_fds_.erase(it);
        }
    }
    for (int fd : ready)
        signal_fence_fd(fd);
}

int HostBackend::mmap(BackendFile file, void* addr, size_t len, int prot, int flags, off_t offset,
                      void** out, uint64_t* token) {
    int fd = -1;
    uint64_t object = 0;
    if (offset < 0)
        return -EINVAL;
    if (int e = kernel_.cpu_map(static_cast<host::FileId>(file), static_cast<uint64_t>(offset), len, &fd,
                                &object))
        return e;
    void* p = ::mmap(addr, len, prot, flags, fd, 0);
    int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) {
        kernel_.cpu_unmap(object);
        return -err;
    }
    *out = p;
    *token = object;
    return 0;
}

int HostBackend::unmap(uint64_t token, void* addr, size_t len) {
    int r = libc().munmap(addr, len) == 0 ? 0 : -errno;
    kernel_.cpu_unmap(token);
    return r;
}

} // namespace fdnc::shim
