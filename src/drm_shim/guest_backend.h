// GuestBackend: the msm uAPI answered by fd_bo over a transport, so an unmodified Mesa msm backend
// (src/freedreno/drm/msm) runs on a native context with guest-chosen iovas. The kernel's objects
// map onto fdnc's: a GEM handle is a reference on a Bo, a submitqueue is a Pipe, a submit is a
// Submit, a kernel fence is the pipe's seqno.
//
// What the driver sees, and what it costs on the host:
// - GEM_NEW is Device::bo_new: the iova comes from the guest heap, GEM_NEW is queued, nothing
//   waits. GET_IOVA is answered locally. Mesa keeps its own bo cache and suballocation heaps, so
//   fdnc's are off (DeviceOptions::bo_cache / suballoc).
// - GET_PARAM is answered from the capset, except the parameters only the host knows now
//   (TIMESTAMP, FAULTS, SUSPENDS, PP_PGTABLE), which are one synchronous request each, as Mesa's
//   own virtio backend does.
// - GEM_SUBMIT is one Submit (bo table with the bos' iovas as presumed addresses, CMD_BUF cmds);
//   WAIT_FENCE and CPU_PREP wait on the pipes' fences (Pipe::wait, Bo::cpu_prep).
// - GEM_MADVISE: fdnc never purges a bo, so every known bo is retained, without a host request.
// - MSM_SUBMIT_FENCE_FD_OUT returns an eventfd that becomes readable when the submit retires
//   (FenceFdSignaller); MSM_SUBMIT_FENCE_FD_IN is waited for on the CPU before the submit is sent
//   (bounded by the device's sync timeout): the transports carry no foreign sync_file to the host.
// - mmap at a GET_OFFSET offset (the bo's iova, unique while it lives) aliases the bo's own
//   mapping (mremap with old size 0) so the driver's munmap never takes fd_bo's mapping away; where
//   the mapping cannot be aliased (device memory), the bo's mapping itself is lent out once.
//
// One Device (one native context, one transport connection) serves every open of the node: vtest
// servers serve one connection at a time, and the probe opens a loader does must not cost a
// context each. Handles and submitqueues stay per open file, as the kernel keeps them.
//
// Not served: SET_IOVA to another address than the bo has (-EBUSY: the guest heap owns iovas;
// GET_IOVA first, as the msm backend does), syncobjs (-EOPNOTSUPP, DRM_CAP_SYNCOBJ is 0), relocs
// and cmd types other than CMD_BUF (-EINVAL), MSM_SUBMIT_SUDO (-EPERM), SYSPROF (-EPERM).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.h"
#include "fd_bo/fd_bo.h"
#include "guest_fence_fds.h"

namespace fdnc::shim {

struct ShimConfig;

class GuestBackend final : public Backend {
public:
    explicit GuestBackend(const ShimConfig& cfg);
    ~GuestBackend() override;

    NodeIdentity identity() const override;
    int open_file(BackendFile* file) override;
    void close_file(BackendFile file) override;
    int ioctl(BackendFile file, unsigned long request, void* arg) override;
    int mmap(BackendFile file, void* addr, size_t len, int prot, int flags, off_t offset, void** out,
             uint64_t* token) override;
    int unmap(uint64_t token, void* addr, size_t len) override;

    // nullptr when the transport could not be opened (error() says why).
    Device* device() { return dev_.get(); }
    const std::string& error() const { return error_; }
    uint64_t bo_news() const { return bo_news_.load(std::memory_order_relaxed); }

private:
    // One GEM handle: a reference on a Bo plus what the kernel keeps on the object.
    struct Handle {
        Bo* bo = nullptr;
        uint32_t msm_flags = 0;
    };
    // A submitqueue. Shared with the ioctls using it: the pipe goes (draining its submits) when
    // the last of them is done with a queue that was closed.
    struct Queue {
        Pipe* pipe = nullptr;
        ~Queue();
    };
    // One open of the node (a drm_file).
    struct File {
        std::mutex mu;
        uint32_t next_handle = 1;
        std::unordered_map<uint32_t, Handle> handles;
        std::unordered_map<Bo*, uint32_t> handle_of; // PRIME import: same bo, same handle
        uint32_t next_queue = 1;                     // 0 is the kernel's default queue
        std::unordered_map<uint32_t, std::shared_ptr<Queue>> queues;
    };
    struct Mapping {
        Bo* bo = nullptr;  // held through acquire()
        bool lent = false; // the bo's own mapping, not an alias
    };
    // What the kernel keeps on a GEM object, for as long as a handle or a mapping holds it.
    struct ObjectState {
        int holders = 0; // handles (in every file) and mappings; one Bo reference in all
        std::string name;              // SET_NAME, for GET_NAME
        std::vector<uint8_t> metadata; // SET/GET_METADATA
        bool lent = false;             // its own mapping is lent out (mmap)
        std::pair<uint64_t, uint64_t> export_id{0, 0}; // (st_dev, st_ino) of its dma-buf, once exported
    };

    std::shared_ptr<File> file(BackendFile f);
    // The bo behind `handle`, held (acquire) for the caller, or nullptr; release() when done.
    Bo* hold(File& f, uint32_t handle, uint32_t* msm_flags = nullptr);
    // acquire: one more holder of `bo`; `ref` is a reference the caller hands over (dropped when
    // the object already has one). release: one holder less; the last drops the reference.
    void acquire(Bo* bo, bool ref_given);
    void release(Bo* bo);
    std::shared_ptr<Queue> queue(File& f, uint32_t id, int* err);
    uint32_t add_handle(File& f, Bo* bo, uint32_t msm_flags); // takes a given reference

    int gem_new(File& f, void* arg);
    int gem_close(File& f, void* arg);
    int gem_info(File& f, void* arg);
    int get_param(void* arg);
    int set_param(void* arg);
    int host_param(uint32_t param, uint64_t* value);
    int prime_handle_to_fd(File& f, void* arg);
    int prime_fd_to_handle(File& f, void* arg);
    int madvise(File& f, void* arg);
    int cpu_prep(File& f, void* arg);
    int submitqueue_new(File& f, void* arg);
    int submitqueue_close(File& f, void* arg);
    int submitqueue_query(File& f, void* arg);
    int submit(File& f, void* arg);
    int wait_fence(File& f, void* arg);

    std::unique_ptr<Device> dev_;
    std::string error_;
    wire::virgl_renderer_capset_drm caps_{};
    std::unique_ptr<FenceFdSignaller> fence_fds_;

    std::mutex mu_; // files_, next_file_, maps_, objects_ (a leaf: no host call under it)
    std::map<BackendFile, std::shared_ptr<File>> files_;
    BackendFile next_file_ = 1;
    std::unordered_map<uint64_t, Mapping> maps_;
    uint64_t next_map_token_ = 1;
    std::unordered_map<Bo*, ObjectState> objects_;
    // Exported dma-bufs by (st_dev, st_ino): importing one of them again finds the same object, as
    // the kernel does, on transports that cannot import (vtest).
    std::map<std::pair<uint64_t, uint64_t>, Bo*> exports_;
    std::mutex debuginfo_mu_;
    std::string comm_, cmdline_; // SET_PARAM COMM / CMDLINE, sent to the host as SET_DEBUGINFO
    std::atomic<uint64_t> bo_news_{0};
};

} // namespace fdnc::shim
