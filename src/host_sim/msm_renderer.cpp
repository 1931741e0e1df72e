#include "msm_renderer.h"

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

#include "virtio_proto/fdnc_ext.h"
#include "virtio_proto/ioctl_encoding.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::host {

using namespace fdnc::wire;

namespace {

constexpr uint32_t kCapsetSize = sizeof(virgl_renderer_capset_drm);

template <class T> T load(std::span<const uint8_t> s, size_t off = 0) {
    T v{};
    if (s.size() >= off + sizeof(T))
        std::memcpy(&v, s.data() + off, sizeof(T));
    return v;
}

template <class T> void put(std::span<uint8_t> s, const T& v, size_t off = 0) {
    if (s.size() >= off + sizeof(T))
        std::memcpy(s.data() + off, &v, sizeof(T));
}

drm_msm_timespec mono_now() {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now().time_since_epoch())
                  .count();
    return {ns / 1000000000, ns % 1000000000};
}

} // namespace

struct MsmRenderer::Resource {
    enum class Kind { Shmem, Gem };
    Kind kind = Kind::Gem;
    uint32_t res_id = 0;
    uint32_t handle = 0; // GEM handle in the context's file (B1: never leaves the host)
    uint64_t size = 0;   // recorded size: GEM_NEW's (unrounded, B5) or lseek of an import (B14)
    uint32_t blob_flags = 0;
    bool exportable = false; // B13
    int shared_fd = -1;      // B11: SHAREABLE blobs are exported at creation
    // §12.1: the host maps an object (GET_OFFSET + mmap) on first use and keeps the mapping until
    // the object is freed; the kernel model owns the memory, so only the pointer is kept here.
    void* map = nullptr;
    uint64_t map_size = 0;
};

struct MsmRenderer::Context {
    uint32_t id = 0;
    FileId file = 0;
    std::map<uint32_t, Resource> resources;
    struct Parked {
        uint32_t handle;
        uint64_t size;
        uint32_t flags;
    };
    std::map<uint32_t, Parked> blobs; // blob_id -> object from GEM_NEW (B5)
    std::vector<uint32_t> leaked;     // removed from the blob table but never bound (B10 failure)
    uint8_t* shmem = nullptr;
    uint64_t shmem_size = 0;
    int shmem_fd = -1;
    uint32_t shmem_res = 0;
    std::map<uint32_t, uint32_t> queue_prio; // F2: learned from SUBMITQUEUE_NEW, never removed
    std::vector<uint64_t> timeline_last;     // F3: per priority, kernel submit seq (0 = none)
    struct PendingFence {
        uint32_t ring;
        uint64_t fence_id;
        uint64_t submit_seq;
    };
    std::deque<PendingFence> pending;

    msm_shmem* page() const { return reinterpret_cast<msm_shmem*>(shmem); }
    uint32_t rsp_area_size() const { return shmem ? uint32_t(shmem_size - kShmemRspMemOffset) : 0; }
};

// The dispatch table (VR13 msm_renderer.c's ccmd_dispatch): name, fixed size, handler.
const MsmRenderer::HandlerEntry MsmRenderer::kHandlers[MSM_CCMD_LAST] = {
    {"(none)", 0, nullptr},
    {"NOP", sizeof(msm_ccmd_nop_req), &MsmRenderer::h_nop},
    {"IOCTL_SIMPLE", sizeof(msm_ccmd_ioctl_simple_req), &MsmRenderer::h_ioctl_simple},
    {"GEM_NEW", sizeof(msm_ccmd_gem_new_req), &MsmRenderer::h_gem_new},
    {"GEM_SET_IOVA", sizeof(msm_ccmd_gem_set_iova_req), &MsmRenderer::h_gem_set_iova},
    {"GEM_CPU_PREP", sizeof(msm_ccmd_gem_cpu_prep_req), &MsmRenderer::h_gem_cpu_prep},
    {"GEM_SET_NAME", sizeof(msm_ccmd_gem_set_name_req), &MsmRenderer::h_gem_set_name},
    {"GEM_SUBMIT", sizeof(msm_ccmd_gem_submit_req), &MsmRenderer::h_gem_submit},
    {"GEM_UPLOAD", sizeof(msm_ccmd_gem_upload_req), &MsmRenderer::h_gem_upload},
    {"SUBMITQUEUE_QUERY", sizeof(msm_ccmd_submitqueue_query_req), &MsmRenderer::h_submitqueue_query},
    {"WAIT_FENCE", sizeof(msm_ccmd_wait_fence_req), &MsmRenderer::h_wait_fence},
    {"SET_DEBUGINFO", sizeof(msm_ccmd_set_debuginfo_req), &MsmRenderer::h_set_debuginfo},
};

MsmRenderer::MsmRenderer(HostSimConfig cfg) : cfg_(std::move(cfg)) {
    auto hook = std::move(cfg_.kernel.fail_hook);
    cfg_.kernel.fail_hook = nullptr;
    kernel_ = std::make_unique<MsmKernel>(cfg_.kernel);
    probe(); // before the fail hook: injected failures count guest-caused calls only
    kernel_->set_fail_hook(std::move(hook));
    kernel_->set_retire_listener([this](const std::vector<RetiredSubmit>&) { on_kernel_retire(); });
}

MsmRenderer::~MsmRenderer() {
    kernel_->set_retire_listener(nullptr);
    std::vector<uint32_t> ids;
    {
        std::lock_guard lk(mu_);
        for (auto& [id, c] : contexts_)
            ids.push_back(id);
    }
    for (uint32_t id : ids)
        context_destroy(id);
    kernel_.reset(); // joins the GPU thread before the rest of *this goes
}

std::unique_ptr<fdnc::Host> make_msm_host(const HostSimConfig& cfg) {
    return std::make_unique<MsmRenderer>(cfg);
}

HostSimConfig host_sim_config(const InprocConfig& in) {
    HostSimConfig cfg;
    cfg.kernel.va_start = in.va_start;
    cfg.kernel.va_size = in.va_size;
    if (in.gpu_id)
        cfg.kernel.gpu.gpu_id = in.gpu_id;
    if (in.chip_id)
        cfg.kernel.gpu.chip_id = in.chip_id;
    cfg.kernel.gpu_exec_us = in.gpu_us;
    if (in.oom_after) {
        auto count = std::make_shared<std::atomic<uint64_t>>(0);
        uint64_t limit = in.oom_after;
        cfg.kernel.fail_hook = [count, limit](KernelOp op, FileId) {
            if (op != KernelOp::GemNew)
                return 0;
            return count->fetch_add(1) < limit ? 0 : -ENOMEM;
        };
    }
    return cfg;
}

std::unique_ptr<fdnc::Host> make_msm_host(const InprocConfig& inproc) {
    return make_msm_host(host_sim_config(inproc));
}

// ---------------------------------------------------------------------------------------------
// logging

void MsmRenderer::logf(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::string line(buf);
    std::lock_guard lk(log_mu_);
    if (cfg_.log_sink)
        cfg_.log_sink(line);
    if (cfg_.log_capacity == 0)
        return;
    if (log_.size() >= cfg_.log_capacity)
        log_.pop_front();
    log_.push_back(std::move(line));
}

std::vector<std::string> MsmRenderer::log() const {
    std::lock_guard lk(log_mu_);
    return {log_.begin(), log_.end()};
}

void MsmRenderer::clear_log() {
    std::lock_guard lk(log_mu_);
    log_.clear();
}

// ---------------------------------------------------------------------------------------------
// capset (§4.4)

void MsmRenderer::probe() {
    const KernelConfig& k = kernel_->config();
    auto& cs = capset_;
    cs = {};
    cs.version_major = k.drm_major;
    cs.version_minor = k.drm_minor;
    cs.version_patchlevel = k.drm_patchlevel;
    cs.context_type = VIRTGPU_DRM_CONTEXT_MSM;
    if (k.drm_minor < 9) { // step 2: no FENCE_SN_IN
        logf("probe: msm uabi 1.%u < 1.9, DRM capset unusable", k.drm_minor);
        cs = {};
        return;
    }
    cs.wire_format_version = kDrmCapsetWireFormatVersion;
    FileId f = kernel_->open_file(true);
    auto param = [&](uint32_t id) -> uint64_t {
        drm_msm_param p{MSM_PIPE_3D0, id, 0, 0, 0};
        return kernel_->get_param(f, p) == 0 ? p.value : 0; // a failing query leaves 0
    };
    auto& m = cs.u.msm;
    m.priorities = uint32_t(param(MSM_PARAM_PRIORITIES));
    m.va_start = param(MSM_PARAM_VA_START);
    m.va_size = param(MSM_PARAM_VA_SIZE);
    m.gpu_id = uint32_t(param(MSM_PARAM_GPU_ID));
    m.gmem_size = uint32_t(param(MSM_PARAM_GMEM_SIZE));
    m.gmem_base = param(MSM_PARAM_GMEM_BASE);
    m.chip_id = param(MSM_PARAM_CHIP_ID);
    m.max_freq = uint32_t(param(MSM_PARAM_MAX_FREQ));
    m.highest_bank_bit = uint32_t(param(MSM_PARAM_HIGHEST_BANK_BIT));
    m.ubwc_swizzle = param(MSM_PARAM_UBWC_SWIZZLE);
    m.macrotile_mode = param(MSM_PARAM_MACROTILE_MODE);
    bool raytracing = param(MSM_PARAM_RAYTRACING) != 0;
    m.uche_trap_base = param(MSM_PARAM_UCHE_TRAP_BASE);
    // Step 5: a 4 KiB CACHED_COHERENT object decides has_cached_coherent (plain 0/1).
    drm_msm_gem_new gn{4096, MSM_BO_CACHED_COHERENT, 0};
    if (kernel_->gem_new(f, gn) == 0) {
        m.has_cached_coherent = 1;
        kernel_->gem_close(f, gn.handle);
    }
    // Step 6: a preemptible queue at priorities/2 decides has_preemption.
    drm_msm_submitqueue sq{MSM_SUBMITQUEUE_ALLOW_PREEMPT, m.priorities / 2, 0};
    bool preemption = kernel_->submitqueue_new(f, sq) == 0;
    if (preemption)
        kernel_->submitqueue_close(f, sq.id);
    // Step 7: §4.3 bool encoding.
    m.has_preemption = preemption ? VIRTGPU_CAP_BOOL_TRUE : VIRTGPU_CAP_BOOL_FALSE;
    m.has_raytracing = raytracing ? VIRTGPU_CAP_BOOL_TRUE : VIRTGPU_CAP_BOOL_FALSE;
    if (cfg_.fdnc_extensions)
        cs.pad = FDNC_CAPSET_EXTENSIONS_MARKER; // fdnc-only: FDNC_CCMD_GEM_GET_IOVA is served
    kernel_->close_file(f);
    if (m.va_size == 0) { // step 8
        logf("probe: no userspace-allocated iova (va_size 0), DRM capset unusable");
        cs = {};
        return;
    }
    probe_ok_ = true;
}

int MsmRenderer::get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) {
    if (capset_id != VIRTGPU_CAPSET_DRM || version != 0 || !probe_ok_)
        return -ENOENT;
    std::memcpy(out.data(), &capset_, std::min<size_t>(out.size(), kCapsetSize));
    return int(kCapsetSize);
}

void MsmRenderer::set_fence_callback(HostFenceCallback cb) {
    std::lock_guard lk(mu_);
    fence_cb_ = std::move(cb);
}

// ---------------------------------------------------------------------------------------------
// contexts

MsmRenderer::Context* MsmRenderer::ctx_locked(uint32_t ctx_id) const {
    auto it = contexts_.find(ctx_id);
    return it == contexts_.end() ? nullptr : it->second.get();
}

int MsmRenderer::context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t num_rings) {
    std::lock_guard lk(mu_);
    if (capset_id != VIRTGPU_CAPSET_DRM) {
        logf("context_create(%u): capset %u is not the DRM capset", ctx_id, capset_id);
        return -EINVAL;
    }
    if (!probe_ok_) {
        logf("context_create(%u): no usable msm device", ctx_id);
        return -ENODEV;
    }
    if (contexts_.count(ctx_id)) {
        logf("context_create(%u): context exists", ctx_id);
        return -EEXIST;
    }
    (void)num_rings; // the VMM's concern; the host serves `priorities` timelines + ring 0 (F1)
    auto c = std::make_unique<Context>();
    c->id = ctx_id;
    c->file = kernel_->open_file(true); // one drm fd (one GPU address space) per context
    c->timeline_last.assign(capset_.u.msm.priorities, 0);
    contexts_[ctx_id] = std::move(c);
    return 0;
}

void MsmRenderer::destroy_resource_locked(Context& c, Resource& r) {
    if (r.kind == Resource::Kind::Shmem) {
        munmap(c.shmem, c.shmem_size);
        close(c.shmem_fd);
        c.shmem = nullptr;
        c.shmem_size = 0;
        c.shmem_fd = -1;
        c.shmem_res = 0;
        return;
    }
    if (r.shared_fd >= 0)
        close(r.shared_fd);
    kernel_->gem_close(c.file, r.handle); // B15: no implicit SET_IOVA(0)
}

// B16: every object (bound, parked, leaked) closed, the shmem unmapped, the drm fd closed.
void MsmRenderer::context_destroy(uint32_t ctx_id) {
    std::lock_guard lk(mu_);
    auto it = contexts_.find(ctx_id);
    if (it == contexts_.end())
        return;
    Context& c = *it->second;
    for (auto& [res_id, r] : c.resources)
        destroy_resource_locked(c, r);
    for (auto& [blob_id, p] : c.blobs)
        kernel_->gem_close(c.file, p.handle);
    for (uint32_t h : c.leaked)
        kernel_->gem_close(c.file, h);
    kernel_->close_file(c.file);
    contexts_.erase(it); // pending fences are dropped with their timelines
}

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

// ---------------------------------------------------------------------------------------------
// fences (§6.5)

int MsmRenderer::context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) {
    FenceList fire_now;
    {
        std::lock_guard lk(mu_);
        Context* c = ctx_locked(ctx_id);
        if (!c) {
            logf("fence: unknown context %u", ctx_id);
            return -EINVAL;
        }
        if (ring_idx > c->timeline_last.size()) { // F4
            logf("fence: invalid ring_idx %u", ring_idx);
            return -EINVAL;
        }
        uint64_t seq = ring_idx ? c->timeline_last[ring_idx - 1] : 0;
        if (ring_idx)
            c->timeline_last[ring_idx - 1] = 0; // the stored fence is consumed
        // Ring 0 (host CPU) or nothing pending on the timeline: retired at once (F4).
        c->pending.push_back({ring_idx, fence_id, seq});
        collect_retired_locked(*c, fire_now);
    }
    fire(fire_now);
    return 0;
}

// Retires, per ring and in order, the fences whose GPU work is done; F6 on every GPU timeline retire.
void MsmRenderer::collect_retired_locked(Context& c, FenceList& out) {
    std::vector<bool> blocked(c.timeline_last.size() + 1, false);
    bool refreshed = false;
    for (auto it = c.pending.begin(); it != c.pending.end();) {
        if (blocked[it->ring]) {
            ++it;
            continue;
        }
        if (it->submit_seq && !kernel_->submit_retired(it->submit_seq)) {
            blocked[it->ring] = true;
            ++it;
            continue;
        }
        if (it->ring && !refreshed) {
            refresh_faults_locked(c);
            refreshed = true;
        }
        out.emplace_back(c.id, it->ring, it->fence_id);
        it = c.pending.erase(it);
    }
}

void MsmRenderer::refresh_faults_locked(Context& c) {
    if (!c.shmem)
        return;
    drm_msm_param p{MSM_PIPE_3D0, MSM_PARAM_FAULTS, 0, 0, 0};
    if (kernel_->get_param(c.file, p) == 0)
        __atomic_store_n(&c.page()->global_faults, uint32_t(p.value), __ATOMIC_RELEASE);
}

void MsmRenderer::on_kernel_retire() {
    FenceList out;
    {
        std::lock_guard lk(mu_);
        for (auto& [id, c] : contexts_)
            collect_retired_locked(*c, out);
    }
    fire(out);
}

void MsmRenderer::fire(const FenceList& fences) {
    if (fences.empty())
        return;
    HostFenceCallback cb;
    {
        std::lock_guard lk(mu_);
        cb = fence_cb_;
    }
    if (!cb)
        return;
    for (auto& [ctx, ring, id] : fences)
        cb(ctx, ring, id);
}

// ---------------------------------------------------------------------------------------------
// the ccmd stream (§6.1, §6.3)

int MsmRenderer::submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    if (!c) {
        logf("submit_cmd: unknown context %u", ctx_id);
        return -EINVAL;
    }
    return run_stream(*c, cmd);
}

int MsmRenderer::run_stream(Context& c, std::span<const uint8_t> cmd) {
    size_t base = 0;
    for (;;) {
        CcmdDecoder dec(cmd.subspan(base), c.rsp_area_size());
        Ccmd rec;
        while (dec.next(&rec)) {
            const HandlerEntry& h = kHandlers[rec.cmd];
            // Private, zero-extended copy before use (H5; no TOCTOU on guest memory).
            const size_t req_len = std::max<size_t>(h.size, rec.bytes.size());
            if (req_buf_.size() < req_len)
                req_buf_.resize(req_len);
            std::memcpy(req_buf_.data(), rec.bytes.data(), rec.bytes.size());
            std::memset(req_buf_.data() + rec.bytes.size(), 0, req_len - rec.bytes.size());
            if (rsp_buf_.size() < rec.rsp_size)
                rsp_buf_.resize(rec.rsp_size);
            if (rec.rsp_size) // R3: built in a zeroed buffer
                std::memset(rsp_buf_.data(), 0, rec.rsp_size);
            std::span<const uint8_t> req(req_buf_.data(), req_len);
            std::span<uint8_t> rsp(rsp_buf_.data(), rec.rsp_size);
            int r = (this->*h.fn)(c, rec, req, rsp);
            if (r) { // H6
                logf("ctx %u: %s (seqno %u) failed with %d: rest of the batch dropped", c.id, h.name,
                     rec.seqno, r);
                return r;
            }
            if (c.shmem) { // H7 / H8
                if (rec.rsp_size)
                    write_response(c, rec.rsp_off, rsp);
                store_seqno(c, rec.seqno);
            }
        }
        if (dec.error() == DecodeError::None)
            return 0;
        size_t at = base + dec.error_offset();
        // fdnc's own extension record (fdnc_ext.h) is unknown to the shared decoder: frame it here.
        if (dec.error() == DecodeError::UnknownCmd && cfg_.fdnc_extensions &&
            load<uint32_t>(cmd, at) == FDNC_CCMD_GEM_GET_IOVA) {
            uint32_t len = load<uint32_t>(cmd, at + 4); // H2 already passed for this record
            int r = run_fdnc_get_iova(c, cmd.subspan(at, len));
            if (r) {
                logf("ctx %u: FDNC_GEM_GET_IOVA failed with %d: rest of the batch dropped", c.id, r);
                return r;
            }
            base = at + len;
            continue;
        }
        logf("ctx %u: malformed ccmd at byte %zu: %s; rest of the batch dropped", c.id, at,
             decode_error_name(dec.error()));
        return dec.error() == DecodeError::RspOffOutOfRange ? -ENOMEM : -EINVAL; // R2 / H2-H4
    }
}

// R3: copy min(guest-written len, host size) bytes and store that length.
void MsmRenderer::write_response(Context& c, uint32_t rsp_off, std::span<const uint8_t> rsp) {
    uint8_t* slot = c.shmem + kShmemRspMemOffset + rsp_off;
    uint32_t guest_len = 0;
    std::memcpy(&guest_len, slot, sizeof guest_len);
    uint32_t n = std::min<uint32_t>(guest_len, uint32_t(rsp.size()));
    if (n > sizeof(uint32_t))
        std::memcpy(slot + sizeof(uint32_t), rsp.data() + sizeof(uint32_t), n - sizeof(uint32_t));
    __atomic_store_n(reinterpret_cast<uint32_t*>(slot), n, __ATOMIC_RELEASE);
}

void MsmRenderer::store_seqno(Context& c, uint32_t seqno) {
    __atomic_exchange_n(&c.page()->base.seqno, seqno, __ATOMIC_SEQ_CST); // R4
}

void MsmRenderer::async_error_locked(Context& c, const std::string& why) {
    logf("ctx %u: async_error: %s", c.id, why.c_str());
    if (c.shmem) // E4: only with a shared page
        __atomic_fetch_add(&c.page()->async_error, 1u, __ATOMIC_SEQ_CST);
}

void MsmRenderer::raise_async_error(uint32_t ctx_id) {
    std::lock_guard lk(mu_);
    if (Context* c = ctx_locked(ctx_id))
        async_error_locked(*c, "injected");
}

// ---------------------------------------------------------------------------------------------
// handlers (§6.4)

int MsmRenderer::h_nop(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>) { return 0; }

int MsmRenderer::h_ioctl_simple(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    const uint32_t ioc = load<uint32_t>(req, offsetof(msm_ccmd_ioctl_simple_req, cmd));
    const uint32_t size = ioc_size(ioc);
    const uint32_t nr = ioc_nr(ioc) - kDrmCommandBase;
    if (ioc_type(ioc) != kDrmIoctlType || size > kIoctlSimplePayloadMax ||
        req.size() < sizeof(msm_ccmd_ioctl_simple_req) + size) {
        logf("IOCTL_SIMPLE 0x%08x refused", ioc);
        return -EINVAL;
    }
    uint8_t buf[kIoctlSimplePayloadMax] = {};
    std::memcpy(buf, req.data() + sizeof(msm_ccmd_ioctl_simple_req), size);
    std::span<uint8_t> arg(buf, size);
    int r;
    if (nr == DRM_MSM_GET_PARAM && size == sizeof(drm_msm_param)) {
        auto p = load<drm_msm_param>(arg);
        r = kernel_->get_param(c.file, p);
        put(arg, p);
    } else if (nr == DRM_MSM_SUBMITQUEUE_NEW && size == sizeof(drm_msm_submitqueue)) {
        auto q = load<drm_msm_submitqueue>(arg);
        r = kernel_->submitqueue_new(c.file, q);
        if (r == 0)
            c.queue_prio[q.id] = q.prio; // F2
        put(arg, q);
    } else if (nr == DRM_MSM_SUBMITQUEUE_CLOSE && size == sizeof(uint32_t)) {
        r = kernel_->submitqueue_close(c.file, load<uint32_t>(arg));
    } else { // §5.5 allow-list
        logf("IOCTL_SIMPLE 0x%08x not allowed", ioc);
        return -EINVAL;
    }
    put(rsp, int32_t(r == 0 ? 0 : -1), offsetof(msm_ccmd_ioctl_simple_rsp, ret)); // errno is lost
    if (ioc_dir(ioc) & kIocRead)
        std::memcpy(rsp.data() + sizeof(msm_ccmd_ioctl_simple_rsp), buf,
                    std::min<size_t>(size, rsp.size() - sizeof(msm_ccmd_ioctl_simple_rsp)));
    return 0;
}

// B2-B5, E1: any failure counts an async error and aborts the rest of the stream.
int MsmRenderer::h_gem_new(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_new_req>(req);
    char why[160];
    if (r.blob_id == 0 || c.blobs.count(r.blob_id)) {
        snprintf(why, sizeof why, "GEM_NEW: invalid blob_id %u", r.blob_id);
        async_error_locked(c, why);
        return -EINVAL;
    }
    drm_msm_gem_new gn{r.size, r.flags, 0};
    if (int e = kernel_->gem_new(c.file, gn)) {
        snprintf(why, sizeof why, "GEM_NEW: kernel GEM_NEW(size %llu, flags 0x%x) failed: %d",
                 (unsigned long long)r.size, r.flags, e);
        async_error_locked(c, why);
        return e;
    }
    drm_msm_gem_info gi{gn.handle, MSM_INFO_SET_IOVA, r.iova, 0, 0};
    if (int e = kernel_->gem_info(c.file, gi)) {
        kernel_->gem_close(c.file, gn.handle);
        snprintf(why, sizeof why, "GEM_NEW: SET_IOVA(0x%llx) failed: %d", (unsigned long long)r.iova, e);
        async_error_locked(c, why);
        return e;
    }
    c.blobs[r.blob_id] = {gn.handle, r.size, r.flags};
    return 0;
}

// E2: failures only count an async error; the stream goes on.
int MsmRenderer::h_gem_set_iova(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_set_iova_req>(req);
    char why[160];
    uint32_t handle = handle_of(c, r.res_id);
    if (!handle) {
        snprintf(why, sizeof why, "GEM_SET_IOVA: unknown res_id %u", r.res_id);
        async_error_locked(c, why);
        return 0;
    }
    drm_msm_gem_info gi{handle, MSM_INFO_SET_IOVA, r.iova, 0, 0};
    if (int e = kernel_->gem_info(c.file, gi)) {
        snprintf(why, sizeof why, "GEM_SET_IOVA(res %u, 0x%llx) failed: %d", r.res_id,
                 (unsigned long long)r.iova, e);
        async_error_locked(c, why);
    }
    return 0;
}

int MsmRenderer::h_gem_cpu_prep(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_gem_cpu_prep_req>(req);
    drm_msm_gem_cpu_prep a{};
    a.handle = handle_of(c, r.res_id);
    a.op = r.op | MSM_PREP_NOSYNC; // never blocks the host
    if (kernel_->config().drm_minor >= 11)
        a.op |= MSM_PREP_BOOST;
    a.timeout = mono_now();
    put(rsp, int32_t(kernel_->gem_cpu_prep(c.file, a)), offsetof(msm_ccmd_gem_cpu_prep_rsp, ret));
    return 0;
}

int MsmRenderer::h_gem_set_name(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_set_name_req>(req);
    if (uint64_t(r.len) > req.size() - sizeof(msm_ccmd_gem_set_name_req)) {
        logf("GEM_SET_NAME: len %u past the request", r.len);
        return -EINVAL;
    }
    std::vector<uint8_t> name(req.begin() + sizeof(msm_ccmd_gem_set_name_req),
                              req.begin() + sizeof(msm_ccmd_gem_set_name_req) + r.len);
    drm_msm_gem_info gi{handle_of(c, r.res_id), MSM_INFO_SET_NAME, 1, r.len, 0};
    if (int e = kernel_->gem_info(c.file, gi, name))
        logf("GEM_SET_NAME(res %u): %d (ignored)", r.res_id, e);
    return 0;
}

// E3: a kernel failure counts an async error; the stream goes on. F3: the last fence per timeline.
int MsmRenderer::h_gem_submit(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_submit_req>(req);
    const uint64_t need = sizeof(r) + uint64_t(r.nr_bos) * sizeof(drm_msm_gem_submit_bo) +
                          uint64_t(r.nr_cmds) * sizeof(drm_msm_gem_submit_cmd);
    if (need > req.size()) {
        logf("GEM_SUBMIT: %u bos + %u cmds do not fit in %zu bytes", r.nr_bos, r.nr_cmds, req.size());
        return -ENOSPC;
    }
    std::vector<drm_msm_gem_submit_bo> bos(r.nr_bos);
    std::vector<drm_msm_gem_submit_cmd> cmds(r.nr_cmds);
    size_t off = sizeof(r);
    for (auto& b : bos) {
        b = load<drm_msm_gem_submit_bo>(req, off);
        b.handle = handle_of(c, b.handle); // res_id -> GEM handle (B17)
        off += sizeof(b);
    }
    for (auto& cm : cmds) {
        cm = load<drm_msm_gem_submit_cmd>(req, off);
        off += sizeof(cm);
    }
    drm_msm_gem_submit a{};
    a.flags = r.flags | MSM_SUBMIT_FENCE_FD_OUT | MSM_SUBMIT_FENCE_SN_IN;
    a.fence = r.fence;
    a.nr_bos = r.nr_bos;
    a.nr_cmds = r.nr_cmds;
    a.queueid = r.queue_id;
    a.fence_fd = -1;
    uint64_t seq = 0;
    if (int e = kernel_->gem_submit(c.file, a, bos, cmds, &seq)) {
        char why[128];
        snprintf(why, sizeof why, "GEM_SUBMIT(queue %u, fence %u) failed: %d", r.queue_id, r.fence, e);
        async_error_locked(c, why);
        return 0;
    }
    auto prio = c.queue_prio.find(r.queue_id);
    if (prio == c.queue_prio.end() || prio->second >= c.timeline_last.size()) {
        logf("GEM_SUBMIT: unknown submitqueue %u (out-fence leaked)", r.queue_id); // F3
        return 0;
    }
    c.timeline_last[prio->second] = seq;
    return 0;
}

int MsmRenderer::h_gem_upload(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_gem_upload_req>(req);
    if (r.pad != 0 || uint64_t(r.len) > req.size() - sizeof(r)) {
        logf("GEM_UPLOAD: malformed (pad %u, len %u)", r.pad, r.len);
        return -EINVAL;
    }
    auto it = c.resources.find(r.res_id);
    if (it == c.resources.end() || it->second.kind != Resource::Kind::Gem) {
        logf("GEM_UPLOAD: unknown res_id %u", r.res_id);
        return -ENOENT;
    }
    if (uint64_t(r.off) + r.len > it->second.size) {
        logf("GEM_UPLOAD: [%u, +%u) past res %u's size %llu", r.off, r.len, r.res_id,
             (unsigned long long)it->second.size);
        return -EFAULT;
    }
    if (int e = map_locked(c, it->second)) {
        logf("GEM_UPLOAD: mmap of res %u failed: %d", r.res_id, e);
        return e;
    }
    std::memcpy(static_cast<uint8_t*>(it->second.map) + r.off, req.data() + sizeof(r), r.len);
    return 0;
}

int MsmRenderer::h_submitqueue_query(Context& c, const Ccmd&, std::span<const uint8_t> req,
                                     std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_submitqueue_query_req>(req);
    drm_msm_submitqueue_query q{};
    q.id = r.queue_id;
    q.param = r.param;
    q.len = r.len;
    q.data = 1; // "a user pointer": the response payload
    const size_t hdr = sizeof(msm_ccmd_submitqueue_query_rsp);
    int e = kernel_->submitqueue_query(c.file, q, rsp.subspan(hdr));
    put(rsp, int32_t(e), offsetof(msm_ccmd_submitqueue_query_rsp, ret));
    put(rsp, r.len, offsetof(msm_ccmd_submitqueue_query_rsp, out_len)); // _IOW: echoes the guest's len
    return 0;
}

int MsmRenderer::h_wait_fence(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t> rsp) {
    auto r = load<msm_ccmd_wait_fence_req>(req);
    drm_msm_wait_fence w{};
    w.fence = r.fence;
    w.queueid = r.queue_id;
    w.timeout = mono_now(); // non-blocking
    if (kernel_->config().drm_minor >= 11)
        w.flags = MSM_WAIT_FENCE_BOOST;
    put(rsp, int32_t(kernel_->wait_fence(c.file, w)), offsetof(msm_ccmd_wait_fence_rsp, ret));
    return 0;
}

int MsmRenderer::h_set_debuginfo(Context& c, const Ccmd&, std::span<const uint8_t> req, std::span<uint8_t>) {
    auto r = load<msm_ccmd_set_debuginfo_req>(req);
    const size_t fixed = sizeof(r);
    if (uint64_t(r.comm_len) + r.cmdline_len > req.size() - fixed) {
        logf("SET_DEBUGINFO: lengths %u+%u past the request", r.comm_len, r.cmdline_len);
        return -ENOSPC;
    }
    auto payload = req.subspan(fixed);
    drm_msm_param comm{MSM_PIPE_3D0, MSM_PARAM_COMM, 1, r.comm_len, 0};
    kernel_->set_param(c.file, comm, payload.subspan(0, r.comm_len)); // errors ignored
    drm_msm_param cmdline{MSM_PIPE_3D0, MSM_PARAM_CMDLINE, 1, r.cmdline_len, 0};
    kernel_->set_param(c.file, cmdline, payload.subspan(r.comm_len, r.cmdline_len));
    return 0;
}

// FDNC_CCMD_GEM_GET_IOVA (fdnc_ext.h): the old host-chosen-iova path, for baselines only.
int MsmRenderer::run_fdnc_get_iova(Context& c, std::span<const uint8_t> rec) {
    auto r = load<fdnc_ccmd_gem_get_iova_req>(rec);
    const uint32_t rsp_size = sizeof(fdnc_ccmd_gem_get_iova_rsp);
    if (!c.shmem || uint64_t(r.hdr.rsp_off) + rsp_size > c.rsp_area_size()) {
        logf("FDNC_GEM_GET_IOVA: rsp_off %u out of range", r.hdr.rsp_off);
        return -ENOMEM;
    }
    fdnc_ccmd_gem_get_iova_rsp rsp{};
    drm_msm_gem_info gi{handle_of(c, r.res_id), MSM_INFO_GET_IOVA, 0, 0, 0};
    rsp.ret = kernel_->gem_info(c.file, gi);
    rsp.iova = rsp.ret == 0 ? gi.value : 0;
    write_response(c, r.hdr.rsp_off, {reinterpret_cast<const uint8_t*>(&rsp), rsp_size});
    store_seqno(c, r.hdr.seqno);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// introspection

ContextStats MsmRenderer::context_stats(uint32_t ctx_id) const {
    std::lock_guard lk(mu_);
    ContextStats s;
    Context* c = ctx_locked(ctx_id);
    if (!c)
        return s;
    if (c->shmem) {
        s.async_error = __atomic_load_n(&c->page()->async_error, __ATOMIC_ACQUIRE);
        s.seqno = __atomic_load_n(&c->page()->base.seqno, __ATOMIC_ACQUIRE);
        s.global_faults = __atomic_load_n(&c->page()->global_faults, __ATOMIC_ACQUIRE);
    }
    s.resources = c->resources.size();
    s.parked_blobs = c->blobs.size();
    s.pending_fences = c->pending.size();
    s.file = c->file;
    return s;
}

std::vector<MappingInfo> MsmRenderer::mappings(uint32_t ctx_id) const {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    return c ? kernel_->mappings(c->file) : std::vector<MappingInfo>{};
}

bool MsmRenderer::mappings_overlap(uint32_t ctx_id) const {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    return c ? kernel_->mappings_overlap(c->file) : false;
}

uint32_t MsmRenderer::gem_handle(uint32_t ctx_id, uint32_t res_id) const {
    std::lock_guard lk(mu_);
    Context* c = ctx_locked(ctx_id);
    return c ? handle_of(*c, res_id) : 0;
}

} // namespace fdnc::host
