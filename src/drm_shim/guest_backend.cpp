// GuestBackend: files, GEM objects, parameters, PRIME and mmap. Submits, waits and submitqueues
// are in guest_submit.cpp.
#include "guest_backend.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <libdrm/drm.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capi/open_device.h"
#include "fd_bo/bo.h"
#include "render_node.h"
#include "shim_config.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/msm_uapi.h"

namespace fdnc::shim {

using namespace fdnc::wire;

namespace {

constexpr int kEtooSmall = 525;            // kernel-internal ETOOSMALL (GET_NAME, GET_METADATA)
constexpr uint32_t kMetadataMax = 128;     // msm_ioctl_gem_info_set_metadata
constexpr uint64_t kPage = 4096;

uint64_t page_align(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

template <typename T> T* user_ptr(uint64_t p) { return reinterpret_cast<T*>(static_cast<uintptr_t>(p)); }

// fd_bo's public flags for an msm GEM_NEW's flags. Mesa keeps its own cache (kBoNoCache).
uint32_t bo_flags_for(uint32_t msm) {
    uint32_t f = kBoNoCache;
    if (msm & MSM_BO_SCANOUT)
        f |= kBoScanout;
    if (msm & MSM_BO_GPU_READONLY)
        f |= kBoGpuReadonly;
    if ((msm & MSM_BO_CACHE_MASK) == MSM_BO_CACHED_COHERENT)
        f |= kBoCachedCoherent;
    return f;
}

std::string process_name() {
    char buf[64] = {};
    int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = ::read(fd, buf, sizeof buf - 1);
        ::close(fd);
        if (n > 0 && buf[n - 1] == '\n')
            buf[n - 1] = '\0';
    }
    return buf[0] ? buf : "fdnc-shim";
}

} // namespace

GuestBackend::GuestBackend(const ShimConfig& cfg) {
    DeviceOptions opts;
    opts.bo_cache = false; // Mesa has its own bo cache and suballocation heaps
    opts.suballoc = false;
    opts.iova_mode = IovaMode::Guest;
    opts.debug_name = process_name();
    {
        NodeFiles::RealPaths real; // the transport's device is a real one, beside the fake node
        dev_ = open_device(cfg.transport_uri, opts, &error_);
    }
    if (!dev_) {
        std::fprintf(stderr, "fdnc drm_shim: guest backend: cannot open \"%s\": %s\n", cfg.transport_uri.c_str(),
                     error_.c_str());
        return;
    }
    caps_ = dev_->caps();
    fence_fds_ = std::make_unique<FenceFdSignaller>(*dev_);
}

GuestBackend::~GuestBackend() {
    fence_fds_.reset();
    std::lock_guard lk(mu_);
    files_.clear(); // their queues' pipes drain and go
    for (auto& [bo, st] : objects_)
        bo->unref();
}

NodeIdentity GuestBackend::identity() const {
    // The host's msm version, as its capset reports it (drmGetVersion is how Mesa picks its msm
    // backend and which features it uses). Without a host: msm 1.12, so a loader's probe still
    // reads a plausible node before open fails.
    NodeIdentity id{"msm", "20130625", "MSM Snapdragon DRM", 1, 12, 0};
    if (dev_) {
        id.major = static_cast<int>(caps_.version_major);
        id.minor = static_cast<int>(caps_.version_minor);
        id.patchlevel = static_cast<int>(caps_.version_patchlevel);
    }
    return id;
}

int GuestBackend::open_file(BackendFile* file) {
    if (!dev_)
        return -ENODEV;
    std::lock_guard lk(mu_);
    *file = next_file_++;
    files_[*file] = std::make_shared<File>();
    return 0;
}

void GuestBackend::close_file(BackendFile id) {
    std::shared_ptr<File> f;
    {
        std::lock_guard lk(mu_);
        auto it = files_.find(id);
        if (it == files_.end())
            return;
        f = it->second;
        files_.erase(it);
    }
    std::vector<Bo*> bos;
    std::vector<std::shared_ptr<Queue>> queues;
    {
        std::lock_guard fl(f->mu);
        for (auto& [h, handle] : f->handles)
            bos.push_back(handle.bo);
        f->handles.clear();
        f->handle_of.clear();
        for (auto& [q, queue] : f->queues)
            queues.push_back(queue);
        f->queues.clear();
    }
    queues.clear(); // each pipe drains its submits, as the kernel's postclose waits for its queues
    for (Bo* bo : bos)
        release(bo);
}

std::shared_ptr<GuestBackend::File> GuestBackend::file(BackendFile id) {
    std::lock_guard lk(mu_);
    auto it = files_.find(id);
    return it == files_.end() ? nullptr : it->second;
}

void GuestBackend::acquire(Bo* bo, bool ref_given) {
    bool drop = false;
    {
        std::lock_guard lk(mu_);
        ObjectState& st = objects_[bo];
        if (st.holders++ > 0 && ref_given)
            drop = true; // the object already holds one reference for all its holders
        else if (st.holders == 1 && !ref_given)
            bo->ref();
    }
    if (drop)
        bo->unref();
}

void GuestBackend::release(Bo* bo) {
    bool last = false;
    {
        std::lock_guard lk(mu_);
        auto it = objects_.find(bo);
        if (it == objects_.end())
            return;
        if (--it->second.holders == 0) {
            if (it->second.export_id.second)
                exports_.erase(it->second.export_id);
            objects_.erase(it);
            last = true;
        }
    }
    if (last)
        bo->unref(); // may free the bo: outside the lock (it can reach the transport)
}

uint32_t GuestBackend::add_handle(File& f, Bo* bo, uint32_t msm_flags) {
    acquire(bo, true);
    uint32_t h = 0;
    bool known = false;
    {
        std::lock_guard fl(f.mu);
        auto it = f.handle_of.find(bo);
        if (it != f.handle_of.end()) {
            h = it->second; // one handle per object and file (a PRIME import of a bo it has)
            known = true;
        } else {
            h = f.next_handle++;
            f.handles[h] = {bo, msm_flags};
            f.handle_of[bo] = h;
        }
    }
    if (known)
        release(bo); // the handle it has already holds the object
    return h;
}

Bo* GuestBackend::hold(File& f, uint32_t handle, uint32_t* msm_flags) {
    Bo* bo = nullptr;
    {
        std::lock_guard fl(f.mu);
        auto it = f.handles.find(handle);
        if (it == f.handles.end())
            return nullptr;
        bo = it->second.bo;
        if (msm_flags)
            *msm_flags = it->second.msm_flags;
        acquire(bo, false); // under f.mu: a concurrent GEM_CLOSE cannot drop it in between
    }
    return bo;
}

int GuestBackend::ioctl(BackendFile id, unsigned long request, void* arg) {
    auto f = file(id);
    if (!f)
        return -EBADF;
    switch (static_cast<uint32_t>(request)) {
    case DRM_IOCTL_GEM_CLOSE: return gem_close(*f, arg);
    case DRM_IOCTL_PRIME_HANDLE_TO_FD: return prime_handle_to_fd(*f, arg);
    case DRM_IOCTL_PRIME_FD_TO_HANDLE: return prime_fd_to_handle(*f, arg);
    case DRM_IOCTL_MSM_GET_PARAM: return get_param(arg);
    case DRM_IOCTL_MSM_SET_PARAM: return set_param(arg);
    case DRM_IOCTL_MSM_GEM_NEW: return gem_new(*f, arg);
    case DRM_IOCTL_MSM_GEM_INFO: return gem_info(*f, arg);
    case DRM_IOCTL_MSM_GEM_CPU_PREP: return cpu_prep(*f, arg);
    case DRM_IOCTL_MSM_GEM_CPU_FINI: {
        Bo* bo = hold(*f, static_cast<drm_msm_gem_cpu_fini*>(arg)->handle);
        if (!bo)
            return -ENOENT;
        release(bo);
        return 0; // nothing to finish: CPU access is coherent with the host's view (§7.7)
    }
    case DRM_IOCTL_MSM_GEM_SUBMIT: return submit(*f, arg);
    case DRM_IOCTL_MSM_WAIT_FENCE: return wait_fence(*f, arg);
    case DRM_IOCTL_MSM_GEM_MADVISE: return madvise(*f, arg);
    case DRM_IOCTL_MSM_SUBMITQUEUE_NEW: return submitqueue_new(*f, arg);
    case DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE: return submitqueue_close(*f, arg);
    case DRM_IOCTL_MSM_SUBMITQUEUE_QUERY: return submitqueue_query(*f, arg);
    default: break;
    }
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) >= 0xBF && _IOC_NR(request) <= 0xCD)
        return -EOPNOTSUPP; // syncobjs: DRM_CAP_SYNCOBJ is 0
    return -EINVAL;         // drm_ioctl: unknown ioctl (the interception layer logs it)
}

// ---- GEM objects --------------------------------------------------------------------------------

int GuestBackend::gem_new(File& f, void* arg) {
    auto* a = static_cast<drm_msm_gem_new*>(arg);
    if (a->flags & ~MSM_BO_FLAGS)
        return -EINVAL;
    const uint32_t cache = a->flags & MSM_BO_CACHE_MASK;
    if (cache != MSM_BO_CACHED && cache != MSM_BO_WC && cache != MSM_BO_UNCACHED && cache != MSM_BO_CACHED_COHERENT)
        return -EINVAL; // msm_gem_new_impl: exactly one caching mode
    if (a->size == 0)
        return -EINVAL;
    int err = 0;
    Bo* bo = dev_->bo_new(page_align(a->size), bo_flags_for(a->flags), nullptr, &err);
    if (!bo)
        return err ? err : -ENOMEM;
    bo_news_.fetch_add(1, std::memory_order_relaxed);
    a->handle = add_handle(f, bo, a->flags);
    return 0;
}

int GuestBackend::gem_close(File& f, void* arg) {
    const uint32_t h = static_cast<drm_gem_close*>(arg)->handle;
    Bo* bo = nullptr;
    {
        std::lock_guard fl(f.mu);
        auto it = f.handles.find(h);
        if (it == f.handles.end())
            return -EINVAL; // drm_gem_handle_delete
        bo = it->second.bo;
        f.handle_of.erase(bo);
        f.handles.erase(it);
    }
    release(bo);
    return 0;
}

int GuestBackend::gem_info(File& f, void* arg) {
    auto* a = static_cast<drm_msm_gem_info*>(arg);
    if (a->pad)
        return -EINVAL;
    switch (a->info) {
    case MSM_INFO_GET_OFFSET:
    case MSM_INFO_GET_IOVA:
    case MSM_INFO_SET_IOVA:
    case MSM_INFO_GET_FLAGS:
        if (a->len)
            return -EINVAL; // by-value kinds (PROTOCOL.md §1.2 #1)
        break;
    case MSM_INFO_SET_NAME:
    case MSM_INFO_GET_NAME:
    case MSM_INFO_SET_METADATA:
    case MSM_INFO_GET_METADATA: break;
    default: return -EINVAL;
    }
    uint32_t msm_flags = 0;
    Bo* bo = hold(f, a->handle, &msm_flags);
    if (!bo)
        return -ENOENT;
    int r = 0;
    switch (a->info) {
    // The iova is unique among live bos and page aligned: it doubles as the mmap offset.
    case MSM_INFO_GET_OFFSET: a->value = bo->iova(); break;
    case MSM_INFO_GET_IOVA: a->value = bo->iova(); break;
    case MSM_INFO_SET_IOVA: r = a->value == bo->iova() ? 0 : -EBUSY; break; // the guest heap owns iovas
    case MSM_INFO_GET_FLAGS: a->value = msm_flags; break;
    case MSM_INFO_SET_NAME: {
        if (a->len >= kMsmBoNameMax)
            r = -EINVAL;
        else if (a->len && !a->value)
            r = -EFAULT;
        else {
            std::string name;
            const char* s = user_ptr<const char>(a->value);
            for (uint32_t i = 0; i < a->len && s[i] >= 0x20 && s[i] < 0x7f; i++)
                name.push_back(s[i]);
            {
                std::lock_guard lk(mu_);
                objects_[bo].name = name;
            }
            r = bo->set_name(name.c_str());
        }
        break;
    }
    case MSM_INFO_GET_NAME: {
        std::lock_guard lk(mu_);
        const std::string& name = objects_[bo].name;
        if (a->value && a->len < name.size())
            r = -kEtooSmall;
        else {
            if (a->value)
                std::memcpy(user_ptr<char>(a->value), name.data(), name.size());
            a->len = static_cast<uint32_t>(name.size());
        }
        break;
    }
    case MSM_INFO_SET_METADATA: {
        if (a->len > kMetadataMax)
            r = -EOVERFLOW;
        else if (a->len && !a->value)
            r = -EFAULT;
        else {
            const auto* p = user_ptr<const uint8_t>(a->value);
            std::lock_guard lk(mu_);
            objects_[bo].metadata.assign(p, p + a->len);
        }
        break;
    }
    case MSM_INFO_GET_METADATA: {
        std::lock_guard lk(mu_);
        const auto& md = objects_[bo].metadata;
        if (!a->value)
            a->len = static_cast<uint32_t>(md.size());
        else if (a->len < md.size())
            r = -kEtooSmall;
        else {
            std::memcpy(user_ptr<uint8_t>(a->value), md.data(), md.size());
            a->len = static_cast<uint32_t>(md.size());
        }
        break;
    }
    }
    release(bo);
    return r;
}

int GuestBackend::madvise(File& f, void* arg) {
    auto* a = static_cast<drm_msm_gem_madvise*>(arg);
    if (a->madv != MSM_MADV_WILLNEED && a->madv != MSM_MADV_DONTNEED)
        return -EINVAL;
    Bo* bo = hold(f, a->handle);
    if (!bo)
        return -ENOENT;
    release(bo);
    a->retained = 1; // fdnc never purges a bo behind the driver's back
    return 0;
}

// ---- parameters ---------------------------------------------------------------------------------

int GuestBackend::host_param(uint32_t param, uint64_t* value) {
    auto req = ccmd::get_param(param);
    std::vector<uint8_t> rsp(req.rsp_size);
    int r = dev_->requests().send_sync(req.span(), rsp, dev_->options().sync_timeout_ns);
    dev_->host_waits().count(HostWait::SyncRequest);
    if (r < 0)
        return r;
    int32_t host_ret = 0;
    if (!ccmd::parse_get_param(rsp, &host_ret, value))
        return -EPROTO;
    return host_ret;
}

int GuestBackend::get_param(void* arg) {
    auto* p = static_cast<drm_msm_param*>(arg);
    if (p->pipe != MSM_PIPE_3D0)
        return -EINVAL;
    const auto& m = caps_.u.msm;
    switch (p->param) {
    case MSM_PARAM_GPU_ID: p->value = m.gpu_id; return 0;
    case MSM_PARAM_GMEM_SIZE: p->value = m.gmem_size; return 0;
    case MSM_PARAM_CHIP_ID: p->value = m.chip_id; return 0;
    case MSM_PARAM_MAX_FREQ: p->value = m.max_freq; return 0;
    case MSM_PARAM_GMEM_BASE: p->value = m.gmem_base; return 0;
    case MSM_PARAM_PRIORITIES: p->value = m.priorities; return 0;
    case MSM_PARAM_VA_START: p->value = dev_->va_range_start(); return 0;
    case MSM_PARAM_VA_SIZE: p->value = dev_->va_range_size(); return 0;
    case MSM_PARAM_HIGHEST_BANK_BIT: p->value = m.highest_bank_bit; return 0;
    case MSM_PARAM_UBWC_SWIZZLE: p->value = m.ubwc_swizzle; return 0;
    case MSM_PARAM_MACROTILE_MODE: p->value = m.macrotile_mode; return 0;
    case MSM_PARAM_UCHE_TRAP_BASE: p->value = m.uche_trap_base; return 0;
    case MSM_PARAM_RAYTRACING: p->value = m.has_raytracing == VIRTGPU_CAP_BOOL_TRUE; return 0;
    // Only the host knows these now: one synchronous request each.
    case MSM_PARAM_TIMESTAMP:
    case MSM_PARAM_FAULTS:
    case MSM_PARAM_SUSPENDS:
    case MSM_PARAM_PP_PGTABLE: return host_param(p->param, &p->value);
    default: return -EINVAL;
    }
}

int GuestBackend::set_param(void* arg) {
    auto* p = static_cast<drm_msm_param*>(arg);
    if (p->pipe != MSM_PIPE_3D0)
        return -EINVAL;
    switch (p->param) {
    case MSM_PARAM_COMM:
    case MSM_PARAM_CMDLINE: {
        if (p->len && !p->value)
            return -EFAULT;
        std::string s(user_ptr<const char>(p->value), p->len);
        std::lock_guard lk(debuginfo_mu_);
        (p->param == MSM_PARAM_COMM ? comm_ : cmdline_) = s;
        // The host names the context after both (SET_DEBUGINFO, buffered: no round trip).
        auto req = ccmd::set_debuginfo(comm_, cmdline_);
        int err = 0;
        if (!dev_->requests().enqueue(req.span(), 0, &err))
            return err ? err : -EIO;
        return 0;
    }
    case MSM_PARAM_SYSPROF: return -EPERM; // needs CAP_SYS_ADMIN on the host; not forwarded
    default: return -EINVAL;
    }
}

// ---- PRIME ----------------------------------------------------------------------------------------

int GuestBackend::prime_handle_to_fd(File& f, void* arg) {
    auto* a = static_cast<drm_prime_handle*>(arg);
    if (a->flags & ~(DRM_CLOEXEC | DRM_RDWR))
        return -EINVAL;
    Bo* bo = hold(f, a->handle);
    if (!bo)
        return -ENOENT;
    int fd = bo->export_dmabuf();
    if (fd >= 0) {
        struct stat st {};
        if (::fstat(fd, &st) == 0) {
            std::lock_guard lk(mu_);
            ObjectState& obj = objects_[bo];
            if (obj.export_id.second)
                exports_.erase(obj.export_id);
            obj.export_id = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
            exports_[obj.export_id] = bo;
        }
    }
    release(bo);
    if (fd < 0)
        return fd;
    if (!(a->flags & DRM_CLOEXEC))
        ::fcntl(fd, F_SETFD, 0);
    a->fd = fd;
    return 0;
}

int GuestBackend::prime_fd_to_handle(File& f, void* arg) {
    auto* a = static_cast<drm_prime_handle*>(arg);
    struct stat st {};
    if (::fstat(a->fd, &st) != 0)
        return -errno; // -EBADF
    Bo* own = nullptr;
    {
        std::lock_guard lk(mu_);
        auto it = exports_.find({static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
        if (it != exports_.end())
            own = it->second->ref(); // alive: it has a holder while it is in exports_
    }
    if (own) {
        a->handle = add_handle(f, own, MSM_BO_WC);
        return 0;
    }
    int err = 0;
    Bo* bo = dev_->bo_import(a->fd, &err);
    if (!bo)
        return err ? err : -EINVAL;
    a->handle = add_handle(f, bo, MSM_BO_WC);
    return 0;
}

// ---- mmap -----------------------------------------------------------------------------------------

int GuestBackend::mmap(BackendFile id, void* addr, size_t len, int prot, int flags, off_t offset, void** out,
                       uint64_t* token) {
    auto f = file(id);
    if (!f)
        return -EBADF;
    if (offset < 0 || !(flags & MAP_SHARED) || len == 0)
        return -EINVAL;
    Bo* bo = nullptr;
    {
        std::lock_guard fl(f->mu);
        for (auto& [h, handle] : f->handles)
            if (handle.bo->iova() == static_cast<uint64_t>(offset)) {
                bo = handle.bo;
                acquire(bo, false);
                break;
            }
    }
    if (!bo)
        return -EINVAL; // drm_gem_mmap: no object at this offset
    if (len > page_align(bo->size())) {
        release(bo);
        return -EINVAL;
    }
    int err = 0;
    void* base = bo->map(&err);
    if (!base) {
        release(bo);
        return err ? err : -ENOMEM;
    }
    (void)prot; // fd_bo maps read/write; the alias inherits it
    const int fixed = flags & MAP_FIXED ? MREMAP_FIXED : 0;
    void* p = ::mremap(base, 0, len, MREMAP_MAYMOVE | fixed, addr);
    bool lent = false;
    if (p == MAP_FAILED) {
        // Device memory (a virtio-gpu host-visible blob) cannot be aliased: lend the bo's own
        // mapping, once (a second mapping would be the same address).
        std::lock_guard lk(mu_);
        ObjectState& st = objects_[bo];
        if (fixed || st.lent) {
            p = nullptr;
        } else {
            st.lent = true;
            p = base;
            lent = true;
        }
    }
    if (!p) {
        release(bo);
        return -ENOMEM;
    }
    std::lock_guard lk(mu_);
    *token = next_map_token_++;
    maps_[*token] = {bo, lent};
    *out = p;
    return 0;
}

int GuestBackend::unmap(uint64_t token, void* addr, size_t len) {
    Mapping m;
    {
        std::lock_guard lk(mu_);
        auto it = maps_.find(token);
        if (it == maps_.end())
            return -EINVAL;
        m = it->second;
        maps_.erase(it);
        if (m.lent)
            objects_[m.bo].lent = false;
    }
    int r = 0;
    if (!m.lent && libc().munmap(addr, len) != 0)
        r = -errno;
    release(m.bo);
    return r;
}

} // namespace fdnc::shim
