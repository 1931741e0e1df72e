// HostBackend: the msm uAPI served by host_sim's MsmKernel, for the real virglrenderer (the host
// side of the native context) running with no GPU.
//
// Beyond the kernel model's per-ioctl methods this adds what only a process can fake:
// - GEM_SUBMIT with MSM_SUBMIT_FENCE_FD_OUT returns an eventfd as the out-fence. It becomes readable
//   (POLLIN, and stays so) when the model retires the submit, which is all the renderer does with it
//   (drm_fence.c: poll(POLLIN), dup, pass to the client). The backend keeps its own dup, so the
//   caller may close or pass on its fd at any time.
// - mmap of the node at a GET_OFFSET offset maps the object's backing memfd (the same memory a
//   PRIME fd maps); the mapping holds the object until it is unmapped (MsmKernel::cpu_map).
// - Syncobjs are not modelled: every DRM_IOCTL_SYNCOBJ_* is -EOPNOTSUPP (what a kernel without
//   DRIVER_SYNCOBJ answers). virglrenderer 1.3's msm renderer never uses them; vtest uses them only
//   for a client's SUBMIT_CMD2 in/out syncobjs (vtest_renderer.c:2242-2400), which fdnc does not send.
#pragma once

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "backend.h"
#include "host_sim/msm_kernel.h"

namespace fdnc::shim {

struct ShimConfig;

class HostBackend final : public Backend {
public:
    explicit HostBackend(const ShimConfig& cfg);
    ~HostBackend() override;

    NodeIdentity identity() const override;
    int open_file(BackendFile* file) override;
    void close_file(BackendFile file) override;
    int ioctl(BackendFile file, unsigned long request, void* arg) override;
    int mmap(BackendFile file, void* addr, size_t len, int prot, int flags, off_t offset, void** out,
             uint64_t* token) override;
    int unmap(uint64_t token, void* addr, size_t len) override;

    host::MsmKernel& kernel() { return kernel_; }

private:
    using FenceKey = std::tuple<host::FileId, uint32_t, uint32_t>; // file, queue, fence
    int submit(host::FileId f, void* arg);
    int out_fence(host::FileId f, uint32_t queue, uint32_t fence, int* fd);
    void on_retired(const std::vector<host::RetiredSubmit>& retired);

    host::MsmKernel kernel_;
    std::mutex fence_mu_;
    std::map<FenceKey, std::vector<int>> fence_fds_; // our dups of unsignalled out-fences
};

} // namespace fdnc::shim
