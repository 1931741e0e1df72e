#include "host_sim/msm_renderer.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host_sim/msm_renderer_internal.h"
#include "virtio_proto/fdnc_ext_wire.h"
#include "virtio_proto/ioctl_encoding.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::host {

using namespace fdnc::wire;
using namespace renderer_detail;

// ---------------------------------------------------------------------------------------------
// blobs and resources (§6.2)

int MsmRenderer::resource_create_blob(uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem, uint32_t blob_flags,
                                      uint64_t size, uint64_t blob_id) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c) {
        logf("blob create: unknown context %u", ctx_id);
        return -EINVAL;
    }
    if (blob_mem != VIRTGPU_BLOB_MEM_HOST3D) {
        logf("blob create res %u: blob_mem %u is not HOST3D", res_id, blob_mem);
        return -EINVAL;
    }
    if (blob_id >> 32) { // B6
        logf("blob create res %u: blob_id 0x%llx has high bits", res_id, (unsigned long long)blob_id);
        return -EINVAL;
    }
    if (c->resources.count(res_id)) { // B8
        logf("blob create: res_id %u already used in context %u", res_id, ctx_id);
        return -EINVAL;
    }
    if (blob_id == kShmemBlobId) { // B7, §5.3
        if (blob_flags != VIRTGPU_BLOB_FLAG_USE_MAPPABLE) {
            logf("shmem blob: flags 0x%x, must be exactly MAPPABLE", blob_flags);
            return -EINVAL;
        }
        if (size < sizeof(msm_shmem) || size > 0xFFFFFFFFull) {
            logf("shmem blob: size %llu out of range", (unsigned long long)size);
            return -EINVAL;
        }
        if (c->shmem) {
            logf("shmem blob: context %u already has one", ctx_id);
            return -EINVAL;
        }
        int fd = memfd_create("fdnc-shmem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0 || ftruncate(fd, off_t(size)) != 0) {
            if (fd >= 0)
                close(fd);
            return -ENOMEM;
        }
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return -ENOMEM;
        }
        c->shmem = static_cast<uint8_t*>(p); // zero-filled by the memfd
        c->shmem_size = size;
        c->shmem_fd = fd;
        c->shmem_res = res_id;
        __atomic_store_n(&c->page()->base.rsp_mem_offset, kShmemRspMemOffset, __ATOMIC_RELEASE);
        Resource r;
        r.kind = Resource::Kind::Shmem;
        r.res_id = res_id;
        r.size = size;
        r.blob_flags = blob_flags;
        r.exportable = true;
        c->resources[res_id] = r;
        return 0;
    }
    auto it = c->blobs.find(uint32_t(blob_id));
    if (it == c->blobs.end()) { // B8: e.g. the GEM_NEW failed or never came
        logf("blob create res %u: no GEM_NEW parked under blob_id %u", res_id, uint32_t(blob_id));
        return -ENOENT;
    }
    Context::Parked parked = it->second;
    c->blobs.erase(it); // the blob_id is reusable from here on
    uint64_t page = cfg_.host_page_size;
    uint64_t aligned = (parked.size + page - 1) / page * page;
    if (aligned != size) { // B10: the object stays open but unbound until context destroy
        logf("blob create res %u: blob size %llu != page-aligned GEM size %llu", res_id,
             (unsigned long long)size, (unsigned long long)aligned);
        c->leaked.push_back(parked.handle);
        return -EINVAL;
    }
    Resource r;
    r.kind = Resource::Kind::Gem;
    r.res_id = res_id;
    r.handle = parked.handle;
    r.size = parked.size;
    r.blob_flags = blob_flags;
    r.exportable = blob_flags & VIRTGPU_BLOB_FLAG_USE_MAPPABLE; // B13
    if (blob_flags & VIRTGPU_BLOB_FLAG_USE_SHAREABLE) {          // B11
        int fd = -1;
        if (int e = kernel_->prime_handle_to_fd(c->file, r.handle, &fd)) {
            logf("blob create res %u: export failed (%d)", res_id, e);
            c->leaked.push_back(parked.handle);
            return e;
        }
        r.shared_fd = fd;
        r.exportable = true;
    }
    c->resources[res_id] = r;
    return 0;
}

int MsmRenderer::resource_map(uint32_t ctx_id, uint32_t res_id, HostMapping* out) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c || !c->resources.count(res_id)) {
        logf("map: unknown res_id %u in context %u", res_id, ctx_id);
        return -EINVAL;
    }
    Resource& r = c->resources[res_id];
    if (r.kind == Resource::Kind::Shmem) {
        *out = {c->shmem, c->shmem_size};
        return 0;
    }
    if (!(r.blob_flags & VIRTGPU_BLOB_FLAG_USE_MAPPABLE)) {
        logf("map: res_id %u is not MAPPABLE", res_id);
        return -EINVAL;
    }
    if (int e = map_locked(*c, r)) {
        logf("map: res_id %u: kernel mmap failed (%d)", res_id, e);
        return e;
    }
    *out = {r.map, r.map_size};
    return 0;
}

int MsmRenderer::map_locked(Context& c, Resource& r) {
    if (r.map)
        return 0;
    return kernel_->map_object(c.file, r.handle, &r.map, &r.map_size);
}

void MsmRenderer::resource_unref(uint32_t ctx_id, uint32_t res_id) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c || !c->resources.count(res_id)) {
        logf("unref: unknown res_id %u in context %u", res_id, ctx_id);
        return;
    }
    destroy_resource_locked(*c, c->resources[res_id]);
    c->resources.erase(res_id);
}

int MsmRenderer::resource_export_fd(uint32_t ctx_id, uint32_t res_id, int* fd) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c || !c->resources.count(res_id)) {
        logf("export: unknown res_id %u in context %u", res_id, ctx_id);
        return -EINVAL;
    }
    Resource& r = c->resources[res_id];
    if (r.kind == Resource::Kind::Shmem) {
        int nfd = fcntl(c->shmem_fd, F_DUPFD_CLOEXEC, 0);
        if (nfd < 0)
            return -errno;
        *fd = nfd;
        return 0;
    }
    if (!r.exportable) { // B13
        logf("export: res_id %u was created without MAPPABLE/SHAREABLE", res_id);
        return -EINVAL;
    }
    return kernel_->prime_handle_to_fd(c->file, r.handle, fd);
}

// B14: PRIME import into this context's drm fd; size = lseek(fd, 0, SEEK_END); no iova yet.
int MsmRenderer::resource_import_fd(uint32_t ctx_id, uint32_t res_id, int fd, uint64_t* size) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c) {
        logf("import: unknown context %u", ctx_id);
        return -EINVAL;
    }
    if (c->resources.count(res_id)) {
        logf("import: res_id %u already used in context %u", res_id, ctx_id);
        return -EINVAL;
    }
    uint32_t handle = 0;
    if (int e = kernel_->prime_fd_to_handle(c->file, fd, &handle)) {
        logf("import: fd %d is not a dma-buf of this device (%d)", fd, e);
        return e;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    Resource r;
    r.kind = Resource::Kind::Gem;
    r.res_id = res_id;
    r.handle = handle;
    r.size = end > 0 ? uint64_t(end) : 0;
    r.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE | VIRTGPU_BLOB_FLAG_USE_SHAREABLE;
    r.exportable = true;
    c->resources[res_id] = r;
    if (size)
        *size = r.size;
    return 0;
}

uint32_t MsmRenderer::handle_of(const Context& c, uint32_t res_id) const {
    auto it = c.resources.find(res_id);
    if (it == c.resources.end() || it->second.kind != Resource::Kind::Gem)
        return 0; // B17: unknown res_id -> handle 0, the kernel call fails
    return it->second.handle;
}

} // namespace fdnc::host
