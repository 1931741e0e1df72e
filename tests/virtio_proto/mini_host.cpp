#include "mini_host.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "virtio_proto/drm_capset.h"
#include "virtio_proto/ioctl_encoding.h"
#include "virtio_proto/msm_ccmd.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::test {

using namespace wire;

namespace {

// A memfd-backed buffer: mappable, exportable as an fd, sized like a dma-buf (lseek END).
int make_memory(uint64_t size, int* fd, void** ptr) {
    *fd = memfd_create("fdnc-minihost", MFD_CLOEXEC);
    if (*fd < 0) return -errno;
    if (ftruncate(*fd, static_cast<off_t>(size)) != 0) {
        const int e = -errno;
        ::close(*fd);
        return e;
    }
    *ptr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (*ptr == MAP_FAILED) {
        const int e = -errno;
        ::close(*fd);
        return e;
    }
    return 0;
}

} // namespace

MiniHost::MiniHost(MiniHostOptions opt) : opt_(opt) {}

MiniHost::~MiniHost() {
    for (auto& [id, r] : res_) {
        munmap(r.ptr, r.size);
        ::close(r.fd);
    }
}

int MiniHost::get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) {
    if (capset_id != VIRTGPU_CAPSET_DRM || version != 0) return -ENOENT;
    virgl_renderer_capset_drm caps{};
    caps.wire_format_version = kDrmCapsetWireFormatVersion;
    caps.version_major = 1;
    caps.version_minor = 12;
    caps.context_type = VIRTGPU_DRM_CONTEXT_MSM;
    caps.u.msm.priorities = opt_.priorities;
    caps.u.msm.va_start = opt_.va_start;
    caps.u.msm.va_size = opt_.va_size;
    caps.u.msm.gpu_id = opt_.gpu_id;
    caps.u.msm.chip_id = opt_.chip_id;
    caps.u.msm.has_raytracing = VIRTGPU_CAP_BOOL_FALSE;
    caps.u.msm.has_preemption = VIRTGPU_CAP_BOOL_FALSE;
    std::memcpy(out.data(), &caps, std::min(out.size(), sizeof caps));
    return sizeof caps;
}

void MiniHost::set_fence_callback(HostFenceCallback cb) {
    std::lock_guard g(mu_);
    cb_ = std::move(cb);
}

int MiniHost::context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t num_rings) {
    std::lock_guard g(mu_);
    if (capset_id != VIRTGPU_CAPSET_DRM || ctxs_.count(ctx_id)) return -EINVAL;
    ctxs_[ctx_id].num_rings = num_rings;
    return 0;
}

void MiniHost::context_destroy(uint32_t ctx_id) {
    std::lock_guard g(mu_);
    if (!ctxs_.count(ctx_id)) return;
    std::vector<uint32_t> ids;
    for (auto& [id, r] : res_)
        if (r.ctxs.count(ctx_id)) ids.push_back(id);
    for (uint32_t id : ids) drop_ref(ctx_id, id); // B16
    ctxs_.erase(ctx_id);
}

void MiniHost::drop_ref(uint32_t ctx, uint32_t res_id) {
    auto it = res_.find(res_id);
    if (it == res_.end()) return;
    it->second.ctxs.erase(ctx);
    auto c = ctxs_.find(ctx);
    if (c != ctxs_.end() && c->second.shmem_res == res_id) {
        c->second.shmem_res = 0;
        c->second.shmem = nullptr;
        c->second.shmem_size = 0;
    }
    if (it->second.ctxs.empty()) {
        munmap(it->second.ptr, it->second.size);
        ::close(it->second.fd);
        res_.erase(it);
    }
}

bool MiniHost::param_value(uint32_t param, uint64_t* v) const {
    switch (param) {
    case MSM_PARAM_GPU_ID: *v = opt_.gpu_id; return true;
    case MSM_PARAM_CHIP_ID: *v = opt_.chip_id; return true;
    case MSM_PARAM_VA_START: *v = opt_.va_start; return true;
    case MSM_PARAM_VA_SIZE: *v = opt_.va_size; return true;
    case MSM_PARAM_PRIORITIES: *v = opt_.priorities; return true;
    case MSM_PARAM_GMEM_SIZE: *v = 1024 * 1024; return true;
    case MSM_PARAM_FAULTS: *v = 0; return true;
    default: return false;
    }
}

// R3: copy min(guest-written len, host size) bytes and store that length.
void MiniHost::respond(Context& c, const Ccmd& cmd, const void* rsp, uint32_t size) {
    uint8_t* slot = c.shmem + kShmemRspMemOffset + cmd.rsp_off;
    uint32_t guest_len;
    std::memcpy(&guest_len, slot, sizeof guest_len);
    const uint32_t n = std::min(guest_len, size);
    if (n > sizeof(vdrm_ccmd_rsp))
        std::memcpy(slot + sizeof(vdrm_ccmd_rsp), static_cast<const uint8_t*>(rsp) + sizeof(vdrm_ccmd_rsp),
                    n - sizeof(vdrm_ccmd_rsp));
    std::memcpy(slot, &n, sizeof n);
}

int MiniHost::run(Context& c, const Ccmd& cmd) {
    uint8_t rsp[sizeof(msm_ccmd_submitqueue_query_rsp) + 256] = {};
    switch (cmd.cmd) {
    case MSM_CCMD_NOP: return 0;
    case MSM_CCMD_IOCTL_SIMPLE: {
        const auto req = cmd.copy<msm_ccmd_ioctl_simple_req>();
        const auto payload = cmd.tail();
        msm_ccmd_ioctl_simple_rsp hdr{};
        uint8_t out[kIoctlSimplePayloadMax] = {};
        std::memcpy(out, payload.data(), std::min(payload.size(), sizeof out));
        switch (ioc_nr(req.cmd) - kDrmCommandBase) {
        case DRM_MSM_GET_PARAM: {
            drm_msm_param p;
            std::memcpy(&p, out, sizeof p);
            hdr.ret = param_value(p.param, &p.value) ? 0 : -1; // P4: errno is not transported
            std::memcpy(out, &p, sizeof p);
            break;
        }
        case DRM_MSM_SUBMITQUEUE_NEW: {
            drm_msm_submitqueue q;
            std::memcpy(&q, out, sizeof q);
            q.id = ++c.next_queue;
            std::memcpy(out, &q, sizeof q);
            break;
        }
        default: break; // SUBMITQUEUE_CLOSE: ret 0
        }
        std::memcpy(rsp, &hdr, sizeof hdr);
        std::memcpy(rsp + sizeof hdr, out, cmd.rsp_size - sizeof hdr);
        respond(c, cmd, rsp, cmd.rsp_size);
        return 0;
    }
    case MSM_CCMD_GEM_NEW: {
        const auto req = cmd.copy<msm_ccmd_gem_new_req>();
        if (req.blob_id == 0 || c.parked.count(req.blob_id)) return -EINVAL; // B2
        c.parked[req.blob_id] = req.size;
        return 0;
    }
    case MSM_CCMD_GEM_CPU_PREP:
    case MSM_CCMD_WAIT_FENCE:
    case MSM_CCMD_SUBMITQUEUE_QUERY: {
        if (cmd.cmd == MSM_CCMD_SUBMITQUEUE_QUERY) {
            const uint32_t len = cmd.copy<msm_ccmd_submitqueue_query_req>().len;
            std::memcpy(rsp + offsetof(msm_ccmd_submitqueue_query_rsp, out_len), &len, sizeof len); // §12
        }
        respond(c, cmd, rsp, std::min<uint32_t>(cmd.rsp_size, sizeof rsp));
        return 0;
    }
    default: return 0; // SET_IOVA, SET_NAME, SUBMIT, UPLOAD, SET_DEBUGINFO: framing only
    }
}

int MiniHost::submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) {
    std::lock_guard g(mu_);
    auto it = ctxs_.find(ctx_id);
    if (it == ctxs_.end()) return -EINVAL;
    Context& c = it->second;
    const uint32_t area = c.shmem ? static_cast<uint32_t>(c.shmem_size - kShmemRspMemOffset) : 0;
    CcmdDecoder dec(cmd, area);
    Ccmd rec;
    while (dec.next(&rec)) {
        if (int r = run(c, rec); r != 0) {
            if (c.shmem) __atomic_fetch_add(reinterpret_cast<uint32_t*>(c.shmem + offsetof(msm_shmem, async_error)), 1,
                                            __ATOMIC_RELEASE);
            return r; // H6
        }
        ++executed_[rec.cmd];
        c.seqnos.push_back(rec.seqno);
        if (c.shmem) // H7: after the response; release pairs with the guest's acquire load
            __atomic_store_n(reinterpret_cast<uint32_t*>(c.shmem + offsetof(vdrm_shmem, seqno)), rec.seqno,
                             __ATOMIC_RELEASE);
    }
    last_error_ = dec.error();
    return dec.error() == DecodeError::None ? 0 : -EINVAL;
}

int MiniHost::resource_create_blob(uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem, uint32_t blob_flags,
                                   uint64_t size, uint64_t blob_id) {
    std::lock_guard g(mu_);
    auto it = ctxs_.find(ctx_id);
    if (it == ctxs_.end() || res_.count(res_id) || blob_mem != VIRTGPU_BLOB_MEM_HOST3D) return -EINVAL;
    Context& c = it->second;
    if (blob_id >> 32) return -EINVAL; // B6
    if (blob_id == kShmemBlobId) {
        // §5.3: exactly USE_MAPPABLE, one per context, 8 <= size <= 4 GiB - 1.
        if (blob_flags != VIRTGPU_BLOB_FLAG_USE_MAPPABLE || c.shmem || size < kShmemRspMemOffset ||
            size > 0xffffffffull)
            return -EINVAL;
    } else {
        auto p = c.parked.find(static_cast<uint32_t>(blob_id));
        if (p == c.parked.end()) return -ENOENT;                  // B8
        if (((p->second + 4095) & ~uint64_t{4095}) != size) return -EINVAL; // B10
        c.parked.erase(p);
    }
    Resource r;
    if (int e = make_memory(size, &r.fd, &r.ptr); e < 0) return e;
    r.size = size;
    r.ctxs.insert(ctx_id);
    if (blob_id == kShmemBlobId) {
        c.shmem_res = res_id;
        c.shmem = static_cast<uint8_t*>(r.ptr);
        c.shmem_size = size;
        const uint32_t off = kShmemRspMemOffset;
        std::memcpy(c.shmem + offsetof(vdrm_shmem, rsp_mem_offset), &off, sizeof off);
    }
    res_[res_id] = r;
    ++blobs_created_;
    return 0;
}

int MiniHost::resource_map(uint32_t ctx_id, uint32_t res_id, HostMapping* out) {
    std::lock_guard g(mu_);
    auto it = res_.find(res_id);
    if (it == res_.end() || !it->second.ctxs.count(ctx_id)) return -ENOENT;
    out->ptr = it->second.ptr;
    out->size = it->second.size;
    return 0;
}

void MiniHost::resource_unref(uint32_t ctx_id, uint32_t res_id) {
    std::lock_guard g(mu_);
    drop_ref(ctx_id, res_id);
}

int MiniHost::resource_export_fd(uint32_t ctx_id, uint32_t res_id, int* fd) {
    std::lock_guard g(mu_);
    auto it = res_.find(res_id);
    if (it == res_.end() || !it->second.ctxs.count(ctx_id)) return -ENOENT;
    *fd = fcntl(it->second.fd, F_DUPFD_CLOEXEC, 0);
    return *fd < 0 ? -errno : 0;
}

int MiniHost::resource_import_fd(uint32_t ctx_id, uint32_t res_id, int fd, uint64_t* size) {
    std::lock_guard g(mu_);
    if (!ctxs_.count(ctx_id)) return -EINVAL;
    if (auto it = res_.find(res_id); it != res_.end()) { // a resource of this host: attach (B14)
        it->second.ctxs.insert(ctx_id);
        *size = it->second.size;
        return 0;
    }
    const off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0) return -EINVAL;
    Resource r;
    r.size = static_cast<uint64_t>(end);
    r.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (r.fd < 0) return -errno;
    r.ptr = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
    if (r.ptr == MAP_FAILED) {
        const int e = -errno;
        ::close(r.fd);
        return e;
    }
    r.ctxs.insert(ctx_id);
    res_[res_id] = r;
    *size = r.size;
    return 0;
}

int MiniHost::context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) {
    HostFenceCallback cb;
    {
        std::lock_guard g(mu_);
        auto it = ctxs_.find(ctx_id);
        if (it == ctxs_.end() || ring_idx >= it->second.num_rings) return -EINVAL;
        if (!opt_.retire_fences) {
            held_.push_back({ctx_id, ring_idx, fence_id});
            return 0;
        }
        cb = cb_;
    }
    if (cb) cb(ctx_id, ring_idx, fence_id); // F4: no GPU here, so every fence retires at once
    return 0;
}

void MiniHost::set_retire_fences(bool retire) {
    std::lock_guard g(mu_);
    opt_.retire_fences = retire;
}

void MiniHost::release_fences() {
    std::vector<Fence> held;
    HostFenceCallback cb;
    {
        std::lock_guard g(mu_);
        held.swap(held_);
        cb = cb_;
    }
    if (cb)
        for (const Fence& f : held) cb(f.ctx, f.ring, f.id);
}

uint64_t MiniHost::executed(uint32_t cmd) const {
    std::lock_guard g(mu_);
    return cmd < executed_.size() ? executed_[cmd] : 0;
}

uint64_t MiniHost::executed_total() const {
    std::lock_guard g(mu_);
    uint64_t n = 0;
    for (uint64_t v : executed_) n += v;
    return n;
}

uint64_t MiniHost::blobs_created() const {
    std::lock_guard g(mu_);
    return blobs_created_;
}

DecodeError MiniHost::last_error() const {
    std::lock_guard g(mu_);
    return last_error_;
}

std::vector<uint32_t> MiniHost::seqnos(uint32_t ctx_id) const {
    std::lock_guard g(mu_);
    auto it = ctxs_.find(ctx_id);
    return it == ctxs_.end() ? std::vector<uint32_t>{} : it->second.seqnos;
}

size_t MiniHost::live_resources() const {
    std::lock_guard g(mu_);
    return res_.size();
}

} // namespace fdnc::test
