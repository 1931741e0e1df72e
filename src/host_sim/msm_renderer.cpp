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
    // Every submit's fence is collected when context_create_fence creates it (after the submit),
    // so a submit retired inside GEM_SUBMIT needs no event.
    cfg_.kernel.retire_at_submit = true;
    // The renderer maps objects through the kernel (obj.map) and drops its mappings before the
    // object goes, so a freed object's memory can be handed to the next one.
    cfg_.kernel.recycle_backings = true;
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
