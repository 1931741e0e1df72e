// MsmRenderer: virglrenderer 1.3's msm native-context renderer (msm_renderer.c + drm_context.c), as a
// fdnc::Host over the MsmKernel model. It fills the DRM capset from a probe of the kernel (§4.4),
// opens one kernel file per context, walks each ccmd stream with CcmdDecoder and dispatches every
// MSM_CCMD through a handler table (§6.1-6.4), keeps the res_id and blob_id tables (§6.2), writes
// responses and the shared page (§6.3, §5.3), counts async errors where VR13 does (§6.4a) and
// retires context fences when the GPU work before them completes (§6.5).
//
// It never trusts the guest: every refusal is logged with a reason (log() / HostSimConfig::log_sink)
// and the host carries on; the context is only affected as the real host would affect it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "host_sim/host_sim_config.h"
#include "host_sim/msm_kernel.h"
#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/host.h"
#include "virtio_proto/msm_ccmd.h"

namespace fdnc::host {

struct ContextStats {
    uint32_t async_error = 0;   // as written in the shared page (0 without one)
    uint32_t seqno = 0;         // shmem.seqno
    uint32_t global_faults = 0; // shmem.global_faults
    size_t resources = 0;       // bound res_ids (shmem included)
    size_t parked_blobs = 0;    // GEM_NEWs not yet consumed by a blob create
    size_t pending_fences = 0;  // context fences waiting for GPU work
    FileId file = 0;
};

class MsmRenderer : public fdnc::Host {
public:
    explicit MsmRenderer(HostSimConfig cfg = {});
    ~MsmRenderer() override;

    // fdnc::Host
    int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) override;
    void set_fence_callback(HostFenceCallback cb) override;
    int context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t num_rings) override;
    void context_destroy(uint32_t ctx_id) override;
    int submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) override;
    int resource_create_blob(uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem, uint32_t blob_flags,
                             uint64_t size, uint64_t blob_id) override;
    int resource_map(uint32_t ctx_id, uint32_t res_id, HostMapping* out) override;
    void resource_unref(uint32_t ctx_id, uint32_t res_id) override;
    int resource_export_fd(uint32_t ctx_id, uint32_t res_id, int* fd) override;
    int resource_import_fd(uint32_t ctx_id, uint32_t res_id, int fd, uint64_t* size) override;
    int context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) override;

    // --- GPU clock (must not be called from inside the fence callback) ---
    void advance(uint64_t us) { kernel_->advance(us); }
    void retire_all() { kernel_->retire_all(); }

    // --- introspection and fault injection for tests ---
    MsmKernel& kernel() { return *kernel_; }
    bool probe_ok() const { return probe_ok_; }
    wire::virgl_renderer_capset_drm capset() const { return capset_; }
    ContextStats context_stats(uint32_t ctx_id) const;
    uint32_t async_error(uint32_t ctx_id) const { return context_stats(ctx_id).async_error; }
    std::vector<MappingInfo> mappings(uint32_t ctx_id) const;
    bool mappings_overlap(uint32_t ctx_id) const;
    uint64_t global_faults() const { return kernel_->global_faults(); }
    size_t live_objects() const { return kernel_->live_objects(); }
    // GEM handle behind res_id (0 if none), for tests that talk to the kernel directly.
    uint32_t gem_handle(uint32_t ctx_id, uint32_t res_id) const;
    std::vector<std::string> log() const;
    void clear_log();
    // Bumps shmem.async_error as if a host-side failure happened (reliability tests).
    void raise_async_error(uint32_t ctx_id);
    // The nth next kernel call of op fails with err (e.g. GemNew, 3, -ENOSPC).
    void inject_kernel_failure(KernelOp op, uint32_t nth, int err) { kernel_->inject_failure(op, nth, err); }

    struct Context;
    struct Resource;

private:
    using Handler = int (MsmRenderer::*)(Context&, const Ccmd&, std::span<const uint8_t> req,
                                         std::span<uint8_t> rsp);
    struct HandlerEntry {
        const char* name;
        uint32_t size; // fixed request size: the private copy is zero-extended to it (H5)
        Handler fn;
    };
    static const HandlerEntry kHandlers[wire::MSM_CCMD_LAST];

    int map_locked(Context& c, Resource& r); // first use maps, later uses reuse (§12.1)
    int h_nop(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_ioctl_simple(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_new(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_set_iova(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_cpu_prep(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_set_name(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_submit(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_gem_upload(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_submitqueue_query(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_wait_fence(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);
    int h_set_debuginfo(Context&, const Ccmd&, std::span<const uint8_t>, std::span<uint8_t>);

    void probe();
    Context* ctx_locked(uint32_t ctx_id) const;
    uint32_t handle_of(const Context& c, uint32_t res_id) const;
    void async_error_locked(Context& c, const std::string& why);
    void logf(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    int run_stream(Context& c, std::span<const uint8_t> cmd);
    int run_fdnc_get_iova(Context& c, std::span<const uint8_t> rec);
    void write_response(Context& c, uint32_t rsp_off, std::span<const uint8_t> rsp);
    void store_seqno(Context& c, uint32_t seqno);
    void refresh_faults_locked(Context& c);
    using FenceList = std::vector<std::tuple<uint32_t, uint32_t, uint64_t>>;
    void collect_retired_locked(Context& c, FenceList& out);
    void on_kernel_retire();
    void fire(const FenceList& fences);
    void destroy_resource_locked(Context& c, Resource& r);

    HostSimConfig cfg_;
    std::unique_ptr<MsmKernel> kernel_;
    wire::virgl_renderer_capset_drm capset_{};
    bool probe_ok_ = false;
    mutable std::mutex mu_;
    std::map<uint32_t, std::unique_ptr<Context>> contexts_;
    HostFenceCallback fence_cb_;
    std::vector<uint8_t> req_buf_, rsp_buf_; // private request copy / response, under mu_
    mutable std::mutex log_mu_;
    std::deque<std::string> log_;
};

// The factory the in-process host, fdnc-hostsim and the tests use.
std::unique_ptr<fdnc::Host> make_msm_host(const HostSimConfig& cfg = {});

// host_sim_config(const InprocConfig&) (inproc_host.h) is the host an "inproc:..." URI describes.

} // namespace fdnc::host

namespace fdnc {
using host::make_msm_host;
}
