#include "fake_virtgpu.h"

#include <poll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "virtio_proto/ioctl_encoding.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::test {

namespace {

std::atomic<uint32_t> g_next_ctx{1000};

template <class T> T* as(void* arg) { return static_cast<T*>(arg); }
template <class T> T* ptr(uint64_t v) { return reinterpret_cast<T*>(static_cast<uintptr_t>(v)); }

// The kernel's ida/idr: the lowest free id from 1.
template <class M> uint32_t lowest_free(const M& used) {
    uint32_t id = 1;
    for (const auto& kv : used) {
        if (kv.first != id) break;
        ++id;
    }
    return id;
}

} // namespace

struct FakeVirtgpu::FenceState {
    std::mutex mu;
    bool alive = true;
    std::map<uint32_t, std::map<uint64_t, int>> rings; // ring -> fence id -> eventfd
    void retire(uint32_t ring, uint64_t id) {
        std::lock_guard g(mu);
        if (!alive) return;
        auto& m = rings[ring];
        for (auto it = m.begin(); it != m.end() && it->first <= id;) {
            const uint64_t one = 1;
            [[maybe_unused]] ssize_t w = ::write(it->second, &one, sizeof one);
            ::close(it->second);
            it = m.erase(it);
        }
    }
};

FakeVirtgpu::FakeVirtgpu(Host& host, FakeVirtgpuConfig cfg)
    : host_(host), cfg_(std::move(cfg)), ctx_id_(g_next_ctx++), fences_(std::make_shared<FenceState>()) {
    auto st = fences_;
    const uint32_t ctx = ctx_id_;
    host_.set_fence_callback([st, ctx](uint32_t c, uint32_t ring, uint64_t id) {
        if (c == ctx) st->retire(ring, id);
    });
}

FakeVirtgpu::~FakeVirtgpu() {
    host_.set_fence_callback([](uint32_t, uint32_t, uint64_t) {});
    std::lock_guard g(fences_->mu);
    fences_->alive = false;
    for (auto& [r, m] : fences_->rings)
        for (auto& [id, fd] : m) ::close(fd);
    fences_->rings.clear();
}

std::vector<std::string> FakeVirtgpu::render_nodes() {
    std::vector<std::string> out;
    for (auto& [n, d] : cfg_.other_nodes) out.push_back(n);
    if (!cfg_.node.empty()) out.push_back(cfg_.node);
    return out;
}

int FakeVirtgpu::open_node(const std::string& path) {
    std::lock_guard g(mu_);
    for (auto& [n, d] : cfg_.other_nodes) {
        if (n != path) continue;
        const int fd = ::eventfd(0, EFD_CLOEXEC);
        other_fds_[fd] = d;
        return fd;
    }
    if (path != cfg_.node) return -ENOENT;
    if (cfg_.open_error) return cfg_.open_error;
    if (file_fd_ >= 0) return -EBUSY; // one file per fake: one context
    file_fd_ = ::eventfd(0, EFD_CLOEXEC);
    return file_fd_;
}

std::string FakeVirtgpu::driver_name(int fd) {
    std::lock_guard g(mu_);
    if (fd == file_fd_) return cfg_.driver;
    auto it = other_fds_.find(fd);
    return it == other_fds_.end() ? std::string() : it->second;
}

void FakeVirtgpu::close(int fd) {
    std::lock_guard g(mu_);
    if (fd == file_fd_) {
        // Closing the DRM file: every GEM handle goes, then the context.
        for (auto& [h, bo] : bos_) host_.resource_unref(ctx_id_, bo.res_id);
        bos_.clear();
        res_ids_.clear();
        if (ctx_) host_.context_destroy(ctx_id_);
        ctx_ = false;
        file_fd_ = -1;
    }
    other_fds_.erase(fd);
    ::close(fd);
}

uint64_t FakeVirtgpu::ioctls(unsigned long request) const {
    std::lock_guard g(mu_);
    auto it = counts_.find(request);
    return it == counts_.end() ? 0 : it->second;
}

size_t FakeVirtgpu::live_handles() const {
    std::lock_guard g(mu_);
    return bos_.size();
}

int FakeVirtgpu::ioctl(int fd, unsigned long request, void* arg) {
    {
        std::lock_guard g(mu_);
        if (fd != file_fd_ || file_fd_ < 0) return -EBADF;
        ++counts_[request];
    }
    switch (request) {
    case wire::DRM_IOCTL_VIRTGPU_GETPARAM: return getparam(arg);
    case wire::DRM_IOCTL_VIRTGPU_GET_CAPS: return get_caps(arg);
    case wire::DRM_IOCTL_VIRTGPU_CONTEXT_INIT: return context_init(arg);
    case wire::DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB: return create_blob(arg);
    case wire::DRM_IOCTL_VIRTGPU_EXECBUFFER: return execbuf(arg);
    case wire::DRM_IOCTL_VIRTGPU_MAP: return map(arg);
    case wire::DRM_IOCTL_VIRTGPU_RESOURCE_INFO: return resource_info(arg);
    case wire::kDrmIoctlGemClose: return gem_close(arg);
    case wire::kDrmIoctlPrimeHandleToFd: return prime_to_fd(arg);
    case wire::kDrmIoctlPrimeFdToHandle: return prime_to_handle(arg);
    default: return -ENOTTY;
    }
}

int FakeVirtgpu::getparam(void* arg) {
    auto* gp = as<wire::drm_virtgpu_getparam>(arg);
    int value = 0;
    switch (gp->param) {
    case wire::VIRTGPU_PARAM_3D_FEATURES: value = cfg_.has_3d; break;
    case wire::VIRTGPU_PARAM_CAPSET_QUERY_FIX: value = 1; break;
    case wire::VIRTGPU_PARAM_RESOURCE_BLOB: value = cfg_.has_blob; break;
    case wire::VIRTGPU_PARAM_HOST_VISIBLE: value = cfg_.has_host_visible; break;
    case wire::VIRTGPU_PARAM_CROSS_DEVICE: value = 0; break;
    case wire::VIRTGPU_PARAM_CONTEXT_INIT:
        if (!cfg_.has_context_init) return -EINVAL; // a pre-5.16 kernel does not know the param
        value = 1;
        break;
    case wire::VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs:
        if (!cfg_.has_context_init) return -EINVAL;
        value = static_cast<int>(cfg_.capset_mask);
        break;
    default: return -EINVAL;
    }
    // §3.2: mainline writes an int through the pointer, nothing into the struct.
    std::memcpy(ptr<void>(gp->value), &value, sizeof value);
    return 0;
}

int FakeVirtgpu::get_caps(void* arg) {
    auto* gc = as<wire::drm_virtgpu_get_caps>(arg);
    if (gc->size == 0) return -EINVAL;
    if (gc->cap_set_id >= 64 || !((cfg_.capset_mask >> gc->cap_set_id) & 1)) return -EINVAL;
    std::vector<uint8_t> host(4096);
    const int n = host_.get_capset(gc->cap_set_id, gc->cap_set_ver, host);
    if (n < 0) return -EINVAL;
    std::memcpy(ptr<void>(gc->addr), host.data(), std::min<size_t>(gc->size, size_t(n)));
    return 0;
}

int FakeVirtgpu::context_init(void* arg) {
    auto* ci = as<wire::drm_virtgpu_context_init>(arg);
    if (cfg_.context_init_error) return cfg_.context_init_error;
    std::lock_guard g(mu_);
    if (ctx_) return -EEXIST;
    if (ci->num_params == 0 || ci->num_params > 8) return -EINVAL;
    auto* params = ptr<wire::drm_virtgpu_context_set_param>(ci->ctx_set_params);
    uint64_t capset = 0, rings = 0;
    bool seen_capset = false, seen_rings = false;
    for (uint32_t i = 0; i < ci->num_params; ++i) {
        switch (params[i].param) {
        case wire::VIRTGPU_CONTEXT_PARAM_CAPSET_ID:
            if (seen_capset || params[i].value >= 64 || !((cfg_.capset_mask >> params[i].value) & 1)) return -EINVAL;
            seen_capset = true;
            capset = params[i].value;
            break;
        case wire::VIRTGPU_CONTEXT_PARAM_NUM_RINGS:
            if (seen_rings || params[i].value > wire::kVirtgpuMaxRings) return -EINVAL;
            seen_rings = true;
            rings = params[i].value;
            break;
        case wire::VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK: break;
        default: return -EINVAL;
        }
    }
    if (int r = host_.context_create(ctx_id_, static_cast<uint32_t>(capset), static_cast<uint32_t>(rings)); r < 0)
        return r;
    ctx_ = true;
    num_rings_ = static_cast<uint32_t>(rings);
    return 0;
}

int FakeVirtgpu::create_blob(void* arg) {
    auto* b = as<wire::drm_virtgpu_resource_create_blob>(arg);
    std::lock_guard g(mu_);
    if (!cfg_.has_blob) return -EINVAL;
    // LNX verify_blob (§3.5).
    if (!b->blob_flags || (b->blob_flags & ~wire::VIRTGPU_BLOB_FLAGS)) return -EINVAL;
    if (b->blob_flags & wire::VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE) return -EINVAL;
    if (b->blob_mem != wire::VIRTGPU_BLOB_MEM_HOST3D && b->blob_mem != wire::VIRTGPU_BLOB_MEM_HOST3D_GUEST &&
        b->blob_mem != wire::VIRTGPU_BLOB_MEM_GUEST)
        return -EINVAL;
    if (b->blob_mem == wire::VIRTGPU_BLOB_MEM_GUEST && (b->blob_id || b->cmd_size)) return -EINVAL;
    if (b->cmd_size % 4) return -EINVAL;
    if (!ctx_) {
        // Any context-creating ioctl creates a default (virgl) context; not modelled: refuse.
        return -EINVAL;
    }
    // The kernel queues cmd, then the create, and does not learn the host's verdict.
    if (b->cmd_size && host_.submit_cmd(ctx_id_, {ptr<const uint8_t>(b->cmd), b->cmd_size}) < 0) ++host_errors_;
    const uint32_t res_id = lowest_free(res_ids_);
    res_ids_[res_id] = true;
    if (host_.resource_create_blob(ctx_id_, res_id, b->blob_mem, b->blob_flags, b->size, b->blob_id) < 0)
        ++host_errors_;
    const uint32_t h = lowest_free(bos_);
    bos_[h] = {res_id, b->size, b->blob_mem, b->blob_flags};
    b->bo_handle = h;
    b->res_handle = res_id;
    return 0;
}

int FakeVirtgpu::execbuf(void* arg) {
    auto* eb = as<wire::drm_virtgpu_execbuffer>(arg);
    const uint32_t known = wire::VIRTGPU_EXECBUF_FENCE_FD_IN | wire::VIRTGPU_EXECBUF_FENCE_FD_OUT |
                           wire::VIRTGPU_EXECBUF_RING_IDX;
    if (eb->flags & ~known) return -EINVAL;
    uint32_t ring = 0;
    {
        std::lock_guard g(mu_);
        if (!ctx_) return -EINVAL;
        if (eb->flags & wire::VIRTGPU_EXECBUF_RING_IDX) {
            if (eb->ring_idx >= num_rings_) return -EINVAL; // §3.6
            ring = eb->ring_idx;
        }
    }
    if (eb->flags & wire::VIRTGPU_EXECBUF_FENCE_FD_IN) {
        // A foreign fence is waited on in the guest before the commands go out.
        pollfd p{eb->fence_fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return -ETIME;
    }
    if (eb->size && host_.submit_cmd(ctx_id_, {ptr<const uint8_t>(eb->command), eb->size}) < 0) ++host_errors_;
    if (eb->flags & wire::VIRTGPU_EXECBUF_FENCE_FD_OUT) {
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        if (efd < 0) return -errno;
        const int user = ::fcntl(efd, F_DUPFD_CLOEXEC, 0);
        uint64_t id;
        {
            std::lock_guard g(mu_);
            id = ++next_fence_;
        }
        {
            std::lock_guard g(fences_->mu);
            fences_->rings[ring][id] = efd;
        }
        if (host_.context_create_fence(ctx_id_, ring, id) < 0) {
            ++host_errors_;
            fences_->retire(ring, id); // a refused fence would never signal; the kernel's does
        }
        eb->fence_fd = user;
    }
    return 0;
}

int FakeVirtgpu::map(void* arg) {
    auto* mp = as<wire::drm_virtgpu_map>(arg);
    std::lock_guard g(mu_);
    auto it = bos_.find(mp->handle);
    if (it == bos_.end()) return -ENOENT;
    if (!cfg_.has_host_visible || !(it->second.blob_flags & wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE)) return -EINVAL;
    const uint64_t off = uint64_t(mp->handle) << 32; // a fake mmap offset per handle
    map_offsets_[off] = mp->handle;
    mp->offset = off;
    return 0;
}

void* FakeVirtgpu::mmap(size_t len, int, int, int fd, off_t offset) {
    std::lock_guard g(mu_);
    if (fd != file_fd_) {
        errno = EBADF;
        return MAP_FAILED;
    }
    auto it = map_offsets_.find(static_cast<uint64_t>(offset));
    if (it == map_offsets_.end() || !bos_.count(it->second)) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    HostMapping hm;
    if (host_.resource_map(ctx_id_, bos_[it->second].res_id, &hm) < 0 || !hm.ptr || len > hm.size) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    return hm.ptr; // the host's own memory: the guest sees exactly what the host writes
}

void FakeVirtgpu::munmap(void*, size_t) {} // the host owns the memory

int FakeVirtgpu::resource_info(void* arg) {
    auto* ri = as<wire::drm_virtgpu_resource_info>(arg);
    std::lock_guard g(mu_);
    auto it = bos_.find(ri->bo_handle);
    if (it == bos_.end()) return -ENOENT;
    ri->res_handle = it->second.res_id;
    ri->size = static_cast<uint32_t>(it->second.size);
    ri->blob_mem = it->second.blob_mem;
    return 0;
}

int FakeVirtgpu::gem_close(void* arg) {
    auto* c = as<wire::drm_gem_close_arg>(arg);
    std::lock_guard g(mu_);
    auto it = bos_.find(c->handle);
    if (it == bos_.end()) return -EINVAL;
    host_.resource_unref(ctx_id_, it->second.res_id);
    res_ids_.erase(it->second.res_id);
    bos_.erase(it);
    return 0;
}

int FakeVirtgpu::prime_to_fd(void* arg) {
    auto* p = as<wire::drm_prime_handle_arg>(arg);
    std::lock_guard g(mu_);
    auto it = bos_.find(p->handle);
    if (it == bos_.end()) return -ENOENT;
    int fd = -1;
    if (int r = host_.resource_export_fd(ctx_id_, it->second.res_id, &fd); r < 0) return r;
    struct stat st;
    if (::fstat(fd, &st) == 0) exported_[{st.st_dev, st.st_ino}] = it->second.res_id;
    p->fd = fd;
    return 0;
}

int FakeVirtgpu::prime_to_handle(void* arg) {
    auto* p = as<wire::drm_prime_handle_arg>(arg);
    struct stat st;
    if (::fstat(p->fd, &st) != 0) return -EBADF;
    std::lock_guard g(mu_);
    // The same dma-buf already has a handle in this file: the kernel returns it again.
    auto ex = exported_.find({st.st_dev, st.st_ino});
    if (ex != exported_.end())
        for (auto& [h, bo] : bos_)
            if (bo.res_id == ex->second) {
                p->handle = h;
                return 0;
            }
    const uint32_t res_id = lowest_free(res_ids_);
    uint64_t size = 0;
    if (int r = host_.resource_import_fd(ctx_id_, res_id, p->fd, &size); r < 0) return r;
    res_ids_[res_id] = true;
    const uint32_t h = lowest_free(bos_);
    bos_[h] = {res_id, size, wire::VIRTGPU_BLOB_MEM_HOST3D,
               wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE | wire::VIRTGPU_BLOB_FLAG_USE_SHAREABLE};
    exported_[{st.st_dev, st.st_ino}] = res_id;
    p->handle = h;
    return 0;
}

} // namespace fdnc::test
