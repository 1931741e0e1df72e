// MsmKernel: a model of the host's Linux msm driver as the msm native context sees it: one GPU,
// per-file address spaces with userspace-chosen iovas (PROTOCOL.md §1), GEM objects, submitqueues,
// guest-chosen fence seqnos, a GPU clock that retires submits, and a fault detector.
//
// Every ioctl returns 0 or the kernel's -errno for the same input (§1.2 table, §2). Three kernel eras:
// KernelEra::Classic tracks vma use, so SET_IOVA(0) on a range pinned by an unretired submit is -EBUSY
// (§1.2 6a); KernelEra::NoVmaTracking clears it anyway (6b) and the GPU faults if a running submit
// still uses it; KernelEra::VmBind is NoVmaTracking plus the 2025 VM_BIND rework's GEM_CLOSE rule
// (§12.3): closing a file's last handle of an object also releases that file's iova, even while a
// dma-buf export or a CPU mapping keeps the object alive.
//
// Faults (the project's iova-safety oracle): a submit's bo entries carry `presumed` = the iova the
// guest believes. For the submit's whole window (queued..retired) each bo must be mapped, in the
// submitting file, at exactly [presumed, presumed + size). This is checked when the submit is queued
// and again whenever a mapping of that file is removed or moved while the submit is unretired, so a
// stale reference cannot slip through. (The real kernel ignores `presumed` without relocs: the
// model is stricter on purpose.)
//
// Locking: every public call takes one mutex. Retire notifications go to the listener without the
// lock held, from advance()/retire_all() (manual clock) or the GPU thread (real-time clock); with
// KernelConfig::retire_at_submit a zero-time submit on an idle ring retires inside GEM_SUBMIT and
// sends none (its owner reads retire state itself).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "host_sim/backing_pool.h"
#include "virtio_proto/msm_uapi.h"

namespace fdnc::host {

enum class KernelEra {
    Classic,       // ~5.19..6.5: vma in-use tracking, SET_IOVA(0) while pinned -> -EBUSY (6a)
    NoVmaTracking, // ~6.6..6.16: SET_IOVA(0) always succeeds (6b)
    // 2025 VM_BIND rework (msm uabi 1.13, without VM_BIND enabled by the file): as NoVmaTracking,
    // and GEM_CLOSE of the file's last handle releases the file's iova of the object. The kernel
    // first waits for the object to be idle (msm_gem_close: dma_resv_wait_timeout); the model
    // returns at once and releases the range when the file's last unretired submit using the object
    // retires, so the range is reserved exactly until then.
    VmBind,
};

enum class ClockMode {
    Manual,   // virtual time: submits retire only in advance()/retire_all() (deterministic tests)
    RealTime, // steady clock + a GPU thread that retires submits when their time is up
};

// Operations the fail hook may make fail (the kernel's should_fail() points).
enum class KernelOp { GemNew, SetIova, GetIova, Submit };

using FileId = uint32_t;

struct GpuConfig {
    uint32_t gpu_id = 630;
    uint64_t chip_id = 0x06030001; // core 6, major 3, minor 0, patch 1 (a630 v2)
    uint32_t gmem_size = 1u << 20; // a630: 1 MiB
    uint64_t gmem_base = 0x100000; // adreno_get_param for non-a650-family
    uint32_t max_freq = 710000000;
    // nr_rings x NR_SCHED_PRIORITIES (3): a630 has one ring -> 3 (§11.5: believed, not verified).
    uint32_t priorities = 3;
    uint32_t highest_bank_bit = 15;
    uint64_t ubwc_swizzle = 0;
    uint64_t macrotile_mode = 0;
    uint64_t uche_trap_base = 0;
    bool has_raytracing = false;
    bool has_cached_coherent = true; // I/O coherent a6xx
    bool has_preemption = false;     // a630: one ring, no preemption
};

struct KernelConfig {
    GpuConfig gpu;
    uint64_t va_start = wire::kAdrenoVmStart; // §1.3
    uint64_t va_size = wire::kDefaultVaSize;
    uint32_t drm_major = 1;
    uint32_t drm_minor = 12; // msm uabi 1.12: FENCE_SN_IN, BOOST, metadata; no VM_BIND
    uint32_t drm_patchlevel = 0;
    KernelEra era = KernelEra::Classic;
    ClockMode clock = ClockMode::Manual;
    uint64_t gpu_exec_us = 0;             // execution time of every submit
    // When set, each submit's execution time instead (varying GPU load); called under the
    // kernel lock, so a plain seeded generator inside is safe.
    std::function<uint64_t()> gpu_exec_us_fn;
    // RealTime clock: a submit that is due at once (no GPU time, ring idle) retires inside GEM_SUBMIT, on the
    // submitting thread, and queues no retire event: for an owner that checks retire state
    // itself after each submit (MsmRenderer's fences are collected when they are created). It
    // spares the GPU thread a wake-up per submit, and with it a futex wake and a reschedule
    // that can land on the guest's CPU (the in-process bo_new tail, bench/README.md).
    bool retire_at_submit = false;
    // Freed objects' memory (never exported: no fd can still reach it) is kept in a BackingPool
    // for the next object of its size instead of being unmapped (an IPI to every CPU the process
    // runs on). For a model host in the guest's own process; the drm_shim's kernel, under the real
    // virglrenderer, keeps the kernel's plain behaviour.
    bool recycle_backings = false;
    uint64_t memory_limit = 1ull << 40;   // GEM_NEW beyond it -> -ENOMEM
    bool require_presumed = true;         // a bo entry with presumed == 0 counts as a fault
    // Called at each should_fail() point; return 0 to proceed or -errno to fail the ioctl there.
    std::function<int(KernelOp, FileId)> fail_hook;
    // One decoded line per kernel call, "NAME\tRESULT\tfile=N details" in drm_shim's log format
    // (src/drm_shim/README.md), so a model host's log compares with the real host's (the
    // realhost suite). Called without the kernel lock, from the calling thread.
    std::function<void(const std::string&)> call_log;
};

// One retired submit, as reported to the listener.
struct RetiredSubmit {
    FileId file = 0;
    uint32_t queue_id = 0;
    uint32_t fence = 0;
    bool faulted = false;
};

struct FaultRecord {
    FileId file = 0;
    uint32_t queue_id = 0;
    uint32_t fence = 0;
    uint64_t iova = 0; // the presumed iova that was not (or no longer) mapped as expected
    std::string reason;
};

struct MappingInfo {
    uint64_t iova = 0;
    uint64_t size = 0;
    uint64_t object_id = 0;
    uint32_t pins = 0; // unretired submits of this file using the object
};

class MsmKernel {
public:
    explicit MsmKernel(KernelConfig cfg = {});
    ~MsmKernel();
    MsmKernel(const MsmKernel&) = delete;
    MsmKernel& operator=(const MsmKernel&) = delete;

    const KernelConfig& config() const { return cfg_; }

    // A drm file; per_process_vm=false gives a file on the global GPU VM (error paths: §1.1, 1.2 #5).
    FileId open_file(bool per_process_vm = true);
    // Drops every handle and queue; the address space goes once the file's submits retired.
    void close_file(FileId f);

    int get_param(FileId f, wire::drm_msm_param& p);
    int set_param(FileId f, const wire::drm_msm_param& p, std::span<const uint8_t> user = {});
    int gem_new(FileId f, wire::drm_msm_gem_new& a);
    // `user` is the buffer `value` would point to for SET_NAME/GET_NAME.
    int gem_info(FileId f, wire::drm_msm_gem_info& a, std::span<uint8_t> user = {});
    int gem_close(FileId f, uint32_t handle);
    int gem_cpu_prep(FileId f, const wire::drm_msm_gem_cpu_prep& a);
    int gem_cpu_fini(FileId f, uint32_t handle);
    int gem_submit(FileId f, wire::drm_msm_gem_submit& a, std::span<const wire::drm_msm_gem_submit_bo> bos,
                   std::span<const wire::drm_msm_gem_submit_cmd> cmds, uint64_t* submit_seq = nullptr);
    int wait_fence(FileId f, const wire::drm_msm_wait_fence& a);
    int submitqueue_new(FileId f, wire::drm_msm_submitqueue& a);
    int submitqueue_close(FileId f, uint32_t id);
    int submitqueue_query(FileId f, wire::drm_msm_submitqueue_query& a, std::span<uint8_t> data);

    // dma-buf model: export gives a new fd (memfd) owned by the caller; the object stays alive (and
    // its ranges reserved, §1.4) while any fd of it is open in this process. Import dedups per file.
    int prime_handle_to_fd(FileId f, uint32_t handle, int* fd);
    int prime_fd_to_handle(FileId f, int fd, uint32_t* handle);
    // Host CPU mapping of the object (GET_OFFSET + mmap); backing is created on first use only.
    int map_object(FileId f, uint32_t handle, void** ptr, uint64_t* size);
    // A CPU mapping made through the drm fd (mmap at a GET_OFFSET offset): resolves the offset to an
    // object this file has a handle of, gives a new fd of the object's backing memory (the caller
    // maps it and closes the fd) and takes a reference on the object, as the kernel's vma does, until
    // cpu_unmap(object_id). -EINVAL: no such offset, or [offset, offset + len) past the object;
    // -EACCES: the object has no handle in this file.
    int cpu_map(FileId f, uint64_t offset, uint64_t len, int* fd, uint64_t* object_id);
    void cpu_unmap(uint64_t object_id);
    // Object size as lseek(dmabuf fd, 0, SEEK_END) reports it.
    int object_size(FileId f, uint32_t handle, uint64_t* size);

    // --- the GPU clock ---
    uint64_t now_us() const;
    void advance(uint64_t us);  // manual clock: move time forward and retire what is due
    void retire_all();           // retire every queued submit (manual or real-time)
    size_t pending_submits() const;
    bool fence_retired(FileId f, uint32_t queue_id, uint32_t fence) const;
    // Submits get a global sequence number (gem_submit's submit_seq); the ring retires in order.
    bool submit_retired(uint64_t seq) const;
    void set_fail_hook(std::function<int(KernelOp, FileId)> hook);
    void set_retire_listener(std::function<void(const std::vector<RetiredSubmit>&)> l);

    // --- introspection for tests ---
    uint64_t global_faults() const;
    uint64_t file_faults(FileId f) const;
    std::vector<FaultRecord> fault_log() const;
    std::vector<MappingInfo> mappings(FileId f) const;
    bool mappings_overlap(FileId f) const; // true = the model itself is broken
    size_t live_objects() const;
    size_t backed_objects() const; // objects with host memory behind them (mapped/uploaded/exported)
    uint64_t memory_used() const;
    void set_memory_limit(uint64_t bytes);
    void set_era(KernelEra era);
    // Fail the nth next call (1 = the next one) of op with err, once.
    void inject_failure(KernelOp op, uint32_t nth, int err);

private:
    // The calls themselves (msm_kernel.cpp); the public entry points above log each one through
    // KernelConfig::call_log (msm_kernel_call_log.cpp).
    FileId open_file_call(bool per_process_vm);
    void close_file_call(FileId f);
    int get_param_call(FileId f, wire::drm_msm_param& p);
    int set_param_call(FileId f, const wire::drm_msm_param& p, std::span<const uint8_t> user);
    int gem_new_call(FileId f, wire::drm_msm_gem_new& a);
    int gem_info_call(FileId f, wire::drm_msm_gem_info& a, std::span<uint8_t> user);
    int gem_close_call(FileId f, uint32_t handle);
    int gem_cpu_prep_call(FileId f, const wire::drm_msm_gem_cpu_prep& a);
    int gem_cpu_fini_call(FileId f, uint32_t handle);
    int gem_submit_call(FileId f, wire::drm_msm_gem_submit& a, std::span<const wire::drm_msm_gem_submit_bo> bos,
                        std::span<const wire::drm_msm_gem_submit_cmd> cmds, uint64_t* submit_seq);
    int wait_fence_call(FileId f, const wire::drm_msm_wait_fence& a);
    int submitqueue_new_call(FileId f, wire::drm_msm_submitqueue& a);
    int submitqueue_close_call(FileId f, uint32_t id);
    int submitqueue_query_call(FileId f, wire::drm_msm_submitqueue_query& a, std::span<uint8_t> data);
    int prime_handle_to_fd_call(FileId f, uint32_t handle, int* fd);
    int prime_fd_to_handle_call(FileId f, int fd, uint32_t* handle);
    int map_object_call(FileId f, uint32_t handle, void** ptr, uint64_t* size);
    void log_call(const char* name, int result, FileId f, const std::string& details) const;

    struct Object;
    struct Queue;
    struct Submit;
    struct File;
    struct AddressSpace;

    File* file_locked(FileId f) const;
    Object* lookup_locked(File& file, uint32_t handle) const;
    int object_locked(FileId f, uint32_t handle, Object** obj) const; // -EBADF / -ENOENT
    uint32_t add_handle_locked(File& file, Object& obj);
    void unref_locked(Object& obj);
    void free_object_locked(Object& obj);
    int get_vma_locked(File& file, Object& obj, uint64_t range_start, uint64_t range_end, uint64_t* iova);
    int clear_iova_locked(File& file, Object& obj);
    void remove_vma_locked(FileId f, Object& obj, const char* why);
    void check_submits_after_removal_locked(FileId f, const Object& obj, uint64_t old_iova, const char* why);
    void fault_locked(Submit& s, uint64_t iova, std::string reason);
    int injected_locked(KernelOp op, FileId f);
    uint64_t now_locked() const;
    void retire_due_locked(uint64_t now);
    void retire_one_locked(Submit& s, bool event = true);
    void maybe_destroy_file_locked(FileId f);
    void reap_orphan_exports_locked();
    int ensure_backing_locked(Object& obj);
    bool queue_fence_signaled_locked(const Queue& q, uint32_t fence) const;
    void deliver_events(std::unique_lock<std::mutex>& lk);
    void gpu_thread_main();

    KernelConfig cfg_;
    mutable std::mutex mu_;
    std::condition_variable cv_; // retire progress (waiters) and new work (GPU thread)
    std::map<FileId, std::unique_ptr<File>> files_;
    FileId next_file_ = 1;
    std::unordered_map<uint64_t, std::unique_ptr<Object>> objects_;
    uint64_t next_object_ = 1;
    std::set<uint64_t> exported_; // objects with a live dma-buf (B14 / §1.4)
    std::unique_ptr<AddressSpace> global_vm_;
    std::deque<std::unique_ptr<Submit>> ring_; // one GPU ring: in submission order, FIFO retire
    uint64_t ring_busy_until_ = 0;
    uint64_t next_seq_ = 1;
    uint64_t retired_seq_ = 0;
    uint64_t manual_now_ = 0;
    uint64_t global_faults_ = 0;
    uint64_t memory_used_ = 0;
    BackingPool spare_backings_{256, 1ull << 20, 32ull << 20};  // KernelConfig::recycle_backings
    std::vector<FaultRecord> fault_log_;
    std::vector<RetiredSubmit> events_;
    std::function<void(const std::vector<RetiredSubmit>&)> listener_;
    std::map<KernelOp, std::pair<uint32_t, int>> injections_;
    bool stop_ = false;
    std::thread gpu_thread_;
    uint64_t epoch_ns_ = 0;
};

} // namespace fdnc::host
