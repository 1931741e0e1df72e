#include "msm_kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fdnc::host {

using namespace fdnc::wire;

namespace {

constexpr uint64_t kPageSize = 4096;
constexpr int kEtooSmall = 525; // kernel-internal ETOOSMALL, returned by GET_NAME
constexpr uint64_t kGlobalVmStart = 16ull << 20; // §1.3 global VM: max(16 MiB, aperture start)
constexpr uint64_t kGlobalVmSize = 0xfeffffffull;

uint64_t page_align(uint64_t v) { return (v + kPageSize - 1) & ~(kPageSize - 1); }

// msm's fence_after(): signed 32-bit difference (§2.9).
bool fence_after(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

uint64_t mono_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// drm_msm_timespec is absolute CLOCK_MONOTONIC (steady_clock on Linux).
int64_t timespec_ns(const drm_msm_timespec& t) { return t.tv_sec * 1000000000ll + t.tv_nsec; }

bool isprint_ascii(uint8_t c) { return c >= 0x20 && c < 0x7f; }

} // namespace

// A drm_mm over [start, start + size) holding exact ranges (one per vma).
struct MsmKernel::AddressSpace {
    uint64_t start = 0;
    uint64_t size = 0;
    std::map<uint64_t, std::pair<uint64_t, uint64_t>> ranges; // iova -> (end, object id)

    uint64_t end() const { return start + size; }

    // drm_mm_insert_node_in_range(size, PAGE_SIZE alignment, [rs, re), best fit): the smallest
    // hole that fits, lowest address on ties; -ENOSPC when nothing fits (§1.2 #7).
    int insert(uint64_t len, uint64_t rs, uint64_t re, uint64_t object_id, uint64_t* out) {
        if (len == 0 || rs >= re)
            return -ENOSPC;
        if (re - rs == len) { // SET_IOVA: exactly one candidate, O(log n)
            if (rs % kPageSize || rs < start || re > end() || overlaps(rs, re))
                return -ENOSPC;
            ranges[rs] = {re, object_id};
            *out = rs;
            return 0;
        }
        rs = std::max(rs, start);
        re = std::min(re, end());
        if (rs >= re)
            return -ENOSPC;
        uint64_t best = 0, best_hole = UINT64_MAX;
        bool found = false;
        uint64_t cursor = start;
        auto consider = [&](uint64_t hole_start, uint64_t hole_end) {
            uint64_t b = page_align(std::max(hole_start, rs));
            uint64_t e = std::min(hole_end, re);
            if (b < e && e - b >= len && hole_end - hole_start < best_hole) {
                best = b;
                best_hole = hole_end - hole_start;
                found = true;
            }
        };
        for (auto& [s, v] : ranges) {
            if (s > cursor)
                consider(cursor, s);
            cursor = std::max(cursor, v.first);
        }
        if (cursor < end())
            consider(cursor, end());
        if (!found)
            return -ENOSPC;
        ranges[best] = {best + len, object_id};
        *out = best;
        return 0;
    }
    bool overlaps(uint64_t b, uint64_t e) const {
        auto it = ranges.lower_bound(e);
        if (it == ranges.begin())
            return false;
        --it;
        return it->second.first > b;
    }
    void release(uint64_t iova) { ranges.erase(iova); }
};

struct MsmKernel::Object {
    uint64_t id = 0;
    uint64_t size = 0; // page aligned (§1.2: obj->size)
    uint32_t flags = 0;
    std::string name;
    std::vector<uint8_t> metadata;
    uint32_t refs = 0; // handles + unretired submits + "some exported fd is open"
    struct Vma {
        uint64_t iova = 0;
    };
    std::map<FileId, Vma> vmas;
    std::map<FileId, uint32_t> pins; // unretired submits per file (the classic vma "inuse")
    std::set<FileId> release_when_idle; // VmBind: GEM_CLOSEd in these files while pinned
    uint32_t readers = 0, writers = 0; // unretired submits by usage (dma_resv READ / WRITE)
    int memfd = -1;
    void* map = nullptr;
    bool exported = false;
    dev_t dev = 0;
    ino_t ino = 0;
};

struct MsmKernel::Queue {
    uint32_t id = 0;
    uint32_t prio = 0;
    uint32_t flags = 0;
    uint32_t faults = 0;
    uint32_t last_fence = 0; // last submitted (§2.9 "after" test)
    uint32_t next_fence = 0;
    std::map<uint32_t, Submit*> unretired; // the queue's fence table (FENCE_SN_IN uniqueness)
};

struct MsmKernel::Submit {
    FileId file = 0;
    std::shared_ptr<Queue> queue;
    uint32_t fence = 0;
    struct Bo {
        Object* obj = nullptr;
        uint32_t flags = 0;
        uint64_t presumed = 0;
    };
    std::vector<Bo> bos;
    uint64_t due_us = 0;
    uint64_t seq = 0;
    bool faulted = false;
};

struct MsmKernel::File {
    FileId id = 0;
    bool per_process = true;
    std::unique_ptr<AddressSpace> own_vm;
    AddressSpace* vm = nullptr;
    std::unordered_map<uint32_t, uint64_t> handles; // GEM handle -> object id
    uint32_t next_handle = 1;
    std::map<uint32_t, std::shared_ptr<Queue>> queues;
    uint32_t next_queue = 1;
    uint64_t faults = 0;
    uint32_t pending = 0; // unretired submits
    bool closed = false;
    std::string comm, cmdline;
};

MsmKernel::MsmKernel(KernelConfig cfg) : cfg_(std::move(cfg)) {
    global_vm_ = std::make_unique<AddressSpace>();
    global_vm_->start = kGlobalVmStart;
    global_vm_->size = kGlobalVmSize;
    epoch_ns_ = mono_ns();
    if (cfg_.clock == ClockMode::RealTime)
        gpu_thread_ = std::thread([this] { gpu_thread_main(); });
}

MsmKernel::~MsmKernel() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (gpu_thread_.joinable())
        gpu_thread_.join();
    for (auto& [id, obj] : objects_) {
        if (obj->map)
            munmap(obj->map, obj->size);
        if (obj->memfd >= 0)
            close(obj->memfd);
    }
}

// ---------------------------------------------------------------------------------------------
// files

FileId MsmKernel::open_file_call(bool per_process_vm) {
    std::lock_guard lk(mu_);
    auto file = std::make_unique<File>();
    file->id = next_file_++;
    file->per_process = per_process_vm;
    if (per_process_vm) {
        file->own_vm = std::make_unique<AddressSpace>();
        file->own_vm->start = cfg_.va_start;
        file->own_vm->size = cfg_.va_size;
        file->vm = file->own_vm.get();
    } else {
        file->vm = global_vm_.get();
    }
    // msm_submitqueue_init: default queue id 0 at priority min(2, max priority).
    auto q = std::make_shared<Queue>();
    q->id = 0;
    q->prio = std::min<uint32_t>(2, cfg_.gpu.priorities ? cfg_.gpu.priorities - 1 : 0);
    file->queues[0] = q;
    FileId id = file->id;
    files_[id] = std::move(file);
    return id;
}

void MsmKernel::close_file_call(FileId f) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return;
    file->closed = true;
    file->queues.clear();
    auto handles = std::move(file->handles);
    file->handles.clear();
    for (auto& [h, oid] : handles) {
        auto it = objects_.find(oid);
        if (it != objects_.end())
            unref_locked(*it->second);
    }
    // Objects this file exported whose fds are all closed go now, not at some later allocation:
    // the real host's fds of a context are gone when its client leaves (§12.3).
    reap_orphan_exports_locked();
    maybe_destroy_file_locked(f);
}

// The address space outlives the file while its submits run (they hold the context).
void MsmKernel::maybe_destroy_file_locked(FileId f) {
    auto it = files_.find(f);
    if (it == files_.end() || !it->second->closed || it->second->pending != 0)
        return;
    File& file = *it->second;
    for (auto& [oid, obj] : objects_) {
        auto v = obj->vmas.find(f);
        if (v != obj->vmas.end()) {
            file.vm->release(v->second.iova);
            obj->vmas.erase(v);
        }
        obj->pins.erase(f);
    }
    files_.erase(it);
}

MsmKernel::File* MsmKernel::file_locked(FileId f) const {
    auto it = files_.find(f);
    if (it == files_.end() || it->second->closed)
        return nullptr;
    return it->second.get();
}

// The object behind a handle of an open file, for the host-side (non-ioctl) entry points.
int MsmKernel::object_locked(FileId f, uint32_t handle, Object** obj) const {
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    *obj = lookup_locked(*file, handle);
    return *obj ? 0 : -ENOENT;
}

MsmKernel::Object* MsmKernel::lookup_locked(File& file, uint32_t handle) const {
    auto it = file.handles.find(handle);
    if (it == file.handles.end())
        return nullptr;
    auto o = objects_.find(it->second);
    return o == objects_.end() ? nullptr : o->second.get();
}

uint32_t MsmKernel::add_handle_locked(File& file, Object& obj) {
    uint32_t h = file.next_handle++;
    file.handles[h] = obj.id;
    obj.refs++;
    return h;
}

void MsmKernel::unref_locked(Object& obj) {
    if (obj.refs > 0 && --obj.refs == 0)
        free_object_locked(obj);
}

// Last reference gone: every vma of the object is released (§1.4 classic), then the memory.
void MsmKernel::free_object_locked(Object& obj) {
    while (!obj.vmas.empty())
        remove_vma_locked(obj.vmas.begin()->first, obj, "object freed");
    if (obj.map)
        munmap(obj.map, obj.size);
    if (obj.memfd >= 0)
        close(obj.memfd);
    memory_used_ -= obj.size;
    exported_.erase(obj.id);
    objects_.erase(obj.id);
}

int MsmKernel::injected_locked(KernelOp op, FileId f) {
    auto it = injections_.find(op);
    if (it != injections_.end()) {
        if (--it->second.first == 0) {
            int err = it->second.second;
            injections_.erase(it);
            return err;
        }
    }
    if (cfg_.fail_hook)
        return cfg_.fail_hook(op, f);
    return 0;
}

void MsmKernel::inject_failure(KernelOp op, uint32_t nth, int err) {
    std::lock_guard lk(mu_);
    if (nth == 0)
        injections_.erase(op);
    else
        injections_[op] = {nth, err};
}

// ---------------------------------------------------------------------------------------------
// params

int MsmKernel::get_param_call(FileId f, drm_msm_param& p) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (p.pipe != MSM_PIPE_3D0)
        return -EINVAL;
    if (p.len != 0) // §1.1: no pointer params yet
        return -EINVAL;
    const GpuConfig& g = cfg_.gpu;
    switch (p.param) {
    case MSM_PARAM_GPU_ID: p.value = g.gpu_id; return 0;
    case MSM_PARAM_GMEM_SIZE: p.value = g.gmem_size; return 0;
    case MSM_PARAM_CHIP_ID: p.value = g.chip_id; return 0;
    case MSM_PARAM_MAX_FREQ: p.value = g.max_freq; return 0;
    case MSM_PARAM_TIMESTAMP: p.value = now_locked() * 19 + now_locked() / 5; return 0; // 19.2 MHz
    case MSM_PARAM_GMEM_BASE: p.value = g.gmem_base; return 0;
    case MSM_PARAM_PRIORITIES: p.value = g.priorities; return 0;
    case MSM_PARAM_PP_PGTABLE: p.value = 0; return 0;
    case MSM_PARAM_FAULTS: p.value = global_faults_; return 0; // classic: global count only
    case MSM_PARAM_SUSPENDS: p.value = 0; return 0;
    case MSM_PARAM_VA_START:
        if (!file->per_process)
            return -EINVAL;
        p.value = file->vm->start;
        return 0;
    case MSM_PARAM_VA_SIZE:
        if (!file->per_process)
            return -EINVAL;
        p.value = file->vm->size;
        return 0;
    case MSM_PARAM_HIGHEST_BANK_BIT: p.value = g.highest_bank_bit; return 0;
    case MSM_PARAM_RAYTRACING: p.value = g.has_raytracing ? 1 : 0; return 0;
    case MSM_PARAM_UBWC_SWIZZLE: p.value = g.ubwc_swizzle; return 0;
    case MSM_PARAM_MACROTILE_MODE: p.value = g.macrotile_mode; return 0;
    case MSM_PARAM_UCHE_TRAP_BASE: p.value = g.uche_trap_base; return 0;
    default: return -EINVAL;
    }
}

int MsmKernel::set_param_call(FileId f, const drm_msm_param& p, std::span<const uint8_t> user) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (p.pipe != MSM_PIPE_3D0)
        return -EINVAL;
    switch (p.param) {
    case MSM_PARAM_COMM:
    case MSM_PARAM_CMDLINE: {
        if (user.size() < p.len)
            return -EFAULT;
        std::string s(reinterpret_cast<const char*>(user.data()), p.len);
        (p.param == MSM_PARAM_COMM ? file->comm : file->cmdline) = s.c_str();
        return 0;
    }
    case MSM_PARAM_SYSPROF: return -EPERM; // needs CAP_SYS_ADMIN
    default: return -EINVAL;
    }
}

// ---------------------------------------------------------------------------------------------
// objects

int MsmKernel::gem_new_call(FileId f, drm_msm_gem_new& a) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (cfg_.clock == ClockMode::RealTime)
        retire_due_locked(now_locked());
    if (a.flags & ~MSM_BO_FLAGS)
        return -EINVAL;
    if (int e = injected_locked(KernelOp::GemNew, f))
        return e;
    // msm_gem_new_impl: exactly one cache mode (UNCACHED is a deprecated, rejected value).
    switch (a.flags & MSM_BO_CACHE_MASK) {
    case MSM_BO_CACHED:
    case MSM_BO_WC: break;
    case MSM_BO_CACHED_COHERENT:
        if (cfg_.gpu.has_cached_coherent)
            break;
        return -EINVAL;
    default: return -EINVAL;
    }
    if (a.size == 0 || a.size > UINT64_MAX - kPageSize) // zero-sized objects are refused
        return -EINVAL;
    uint64_t size = page_align(a.size);
    reap_orphan_exports_locked();
    if (size > cfg_.memory_limit || memory_used_ > cfg_.memory_limit - size)
        return -ENOMEM;
    auto obj = std::make_unique<Object>();
    obj->id = next_object_++;
    obj->size = size;
    obj->flags = a.flags;
    memory_used_ += size;
    Object& o = *obj;
    objects_[o.id] = std::move(obj);
    a.handle = add_handle_locked(*file, o);
    return 0;
}

int MsmKernel::gem_close_call(FileId f, uint32_t handle) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    Object* obj = lookup_locked(*file, handle);
    if (!obj)
        return -EINVAL; // drm_gem_handle_delete
    file->handles.erase(handle);
    // VM_BIND era (§12.3): the file's last handle takes the file's iova with it, once the object
    // is idle in this file (see KernelEra::VmBind).
    if (cfg_.era == KernelEra::VmBind && obj->vmas.count(f)) {
        bool other_handle = false;
        for (auto& [h, oid] : file->handles)
            other_handle |= oid == obj->id;
        if (!other_handle) {
            auto pin = obj->pins.find(f);
            if (pin != obj->pins.end() && pin->second > 0)
                obj->release_when_idle.insert(f);
            else
                remove_vma_locked(f, *obj, "GEM_CLOSE (VM_BIND era)");
        }
    }
    // §1.4 classic: the vma lives as long as the object (pins, exports, mappings, other handles).
    unref_locked(*obj);
    return 0;
}

// get_vma_locked(): the object's vma in this file, creating one inside [rs, re) if none.
int MsmKernel::get_vma_locked(File& file, Object& obj, uint64_t rs, uint64_t re, uint64_t* iova) {
    auto it = obj.vmas.find(file.id);
    if (it != obj.vmas.end()) {
        *iova = it->second.iova;
        return 0;
    }
    reap_orphan_exports_locked();
    uint64_t at = 0;
    if (int e = file.vm->insert(obj.size, rs, re, obj.id, &at))
        return e;
    obj.vmas[file.id].iova = at;
    *iova = at;
    return 0;
}

int MsmKernel::clear_iova_locked(File& file, Object& obj) {
    auto it = obj.vmas.find(file.id);
    if (it == obj.vmas.end())
        return 0;
    auto pin = obj.pins.find(file.id);
    if (cfg_.era == KernelEra::Classic && pin != obj.pins.end() && pin->second > 0)
        return -EBUSY; // §1.2 6a: in use by an unretired submit, nothing released
    remove_vma_locked(file.id, obj, "SET_IOVA(0) while a submit uses it");
    return 0;
}

void MsmKernel::remove_vma_locked(FileId f, Object& obj, const char* why) {
    auto it = obj.vmas.find(f);
    if (it == obj.vmas.end())
        return;
    uint64_t iova = it->second.iova;
    auto fit = files_.find(f);
    if (fit != files_.end())
        fit->second->vm->release(iova);
    obj.vmas.erase(it);
    check_submits_after_removal_locked(f, obj, iova, why);
}

// A mapping of file f went away: every unretired submit of f that references the object now
// points the GPU at an unmapped (or soon reused) range.
void MsmKernel::check_submits_after_removal_locked(FileId f, const Object& obj, uint64_t old_iova,
                                                   const char* why) {
    for (auto& s : ring_) {
        if (s->file != f || s->faulted)
            continue;
        for (auto& bo : s->bos) {
            if (bo.obj == &obj) {
                fault_locked(*s, bo.presumed ? bo.presumed : old_iova, why);
                break;
            }
        }
    }
}

void MsmKernel::fault_locked(Submit& s, uint64_t iova, std::string reason) {
    if (s.faulted)
        return;
    s.faulted = true;
    global_faults_++;
    s.queue->faults++;
    auto fit = files_.find(s.file);
    if (fit != files_.end())
        fit->second->faults++;
    fault_log_.push_back({s.file, s.queue->id, s.fence, iova, std::move(reason)});
}

int MsmKernel::gem_info_call(FileId f, drm_msm_gem_info& a, std::span<uint8_t> user) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (cfg_.clock == ClockMode::RealTime)
        retire_due_locked(now_locked());
    if (a.pad)
        return -EINVAL;
    switch (a.info) {
    case MSM_INFO_GET_OFFSET:
    case MSM_INFO_GET_IOVA:
    case MSM_INFO_SET_IOVA:
    case MSM_INFO_GET_FLAGS:
        if (a.len != 0) // §1.2 #1: by-value kinds
            return -EINVAL;
        break;
    case MSM_INFO_SET_NAME:
    case MSM_INFO_GET_NAME:
    case MSM_INFO_SET_METADATA:
    case MSM_INFO_GET_METADATA: break;
    default: return -EINVAL;
    }
    Object* obj = lookup_locked(*file, a.handle);
    if (!obj)
        return -ENOENT; // §1.2 #2
    switch (a.info) {
    case MSM_INFO_GET_OFFSET: a.value = obj->id << 20; return 0; // fake mmap offset
    case MSM_INFO_GET_IOVA: {
        if (int e = injected_locked(KernelOp::GetIova, f))
            return e;
        uint64_t iova = 0;
        if (int e = get_vma_locked(*file, *obj, 0, UINT64_MAX, &iova))
            return e;
        a.value = iova;
        return 0;
    }
    case MSM_INFO_SET_IOVA: {
        if (!file->per_process)
            return -EOPNOTSUPP; // §1.2 #5
        if (int e = injected_locked(KernelOp::SetIova, f))
            return e;
        if (a.value == 0)
            return clear_iova_locked(*file, *obj); // #6 / 6a / 6b
        if (a.value > UINT64_MAX - obj->size)
            return -ENOSPC;
        uint64_t iova = 0;
        if (int e = get_vma_locked(*file, *obj, a.value, a.value + obj->size, &iova))
            return e; // #7: -ENOSPC (taken, unaligned, out of range)
        if (iova != a.value) {
            // #9: mapped elsewhere: the old vma is cleared (only if idle on classic) AND -EBUSY.
            clear_iova_locked(*file, *obj);
            return -EBUSY;
        }
        return 0; // #7 / #8
    }
    case MSM_INFO_GET_FLAGS: a.value = obj->flags; return 0;
    case MSM_INFO_SET_NAME: {
        if (a.len >= kMsmBoNameMax) // room for the NUL
            return -EINVAL;
        if (user.size() < a.len)
            return -EFAULT;
        std::string name;
        for (uint32_t i = 0; i < a.len && isprint_ascii(user[i]); i++)
            name.push_back(static_cast<char>(user[i]));
        obj->name = name;
        return 0;
    }
    case MSM_INFO_GET_NAME: {
        if (a.value && a.len < obj->name.size())
            return -kEtooSmall;
        a.len = static_cast<uint32_t>(obj->name.size());
        if (a.value) {
            if (user.size() < a.len)
                return -EFAULT;
            std::copy_n(obj->name.begin(), a.len, user.begin());
        }
        return 0;
    }
    case MSM_INFO_SET_METADATA: {
        if (a.len > 128)
            return -EOVERFLOW;
        if (user.size() < a.len)
            return -EFAULT;
        obj->metadata.assign(user.begin(), user.begin() + a.len);
        return 0;
    }
    case MSM_INFO_GET_METADATA: {
        if (!a.value) {
            a.len = static_cast<uint32_t>(obj->metadata.size());
            return 0;
        }
        if (a.len < obj->metadata.size())
            return -kEtooSmall;
        if (user.size() < obj->metadata.size())
            return -EFAULT;
        std::copy(obj->metadata.begin(), obj->metadata.end(), user.begin());
        a.len = static_cast<uint32_t>(obj->metadata.size());
        return 0;
    }
    default: return -EINVAL;
    }
}

int MsmKernel::gem_cpu_prep_call(FileId f, const drm_msm_gem_cpu_prep& a) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    uint32_t valid = MSM_PREP_READ | MSM_PREP_WRITE | MSM_PREP_NOSYNC;
    if (cfg_.drm_minor >= 11)
        valid |= MSM_PREP_BOOST;
    if (a.op & ~valid)
        return -EINVAL;
    Object* obj = lookup_locked(*file, a.handle);
    if (!obj)
        return -ENOENT;
    uint64_t oid = obj->id;
    bool write = a.op & MSM_PREP_WRITE;
    // dma_resv_usage_rw(write): a writer waits for readers and writers, a reader for writers.
    auto busy = [&] {
        if (cfg_.clock == ClockMode::RealTime)
            retire_due_locked(now_locked());
        auto it = objects_.find(oid);
        if (it == objects_.end())
            return false;
        return write ? (it->second->readers + it->second->writers) > 0 : it->second->writers > 0;
    };
    if (!busy())
        return 0;
    int64_t deadline = timespec_ns(a.timeout);
    bool no_wait = (a.op & MSM_PREP_NOSYNC) || deadline <= static_cast<int64_t>(mono_ns());
    if (no_wait)
        return -EBUSY; // remaining time 0 -> -EBUSY
    if (cfg_.clock == ClockMode::Manual)
        return -ETIMEDOUT; // virtual time does not pass while we wait
    auto tp = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline));
    while (busy()) {
        if (cv_.wait_until(lk, tp) == std::cv_status::timeout && busy())
            return -ETIMEDOUT;
    }
    return 0;
}

int MsmKernel::gem_cpu_fini_call(FileId f, uint32_t handle) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    return lookup_locked(*file, handle) ? 0 : -ENOENT;
}

// ---------------------------------------------------------------------------------------------
// submitqueues

int MsmKernel::submitqueue_new_call(FileId f, drm_msm_submitqueue& a) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (a.flags & ~MSM_SUBMITQUEUE_ALLOW_PREEMPT)
        return -EINVAL;
    if ((a.flags & MSM_SUBMITQUEUE_ALLOW_PREEMPT) && !cfg_.gpu.has_preemption)
        return -EINVAL;
    if (a.prio >= cfg_.gpu.priorities) // msm_gpu_convert_priority
        return -EINVAL;
    auto q = std::make_shared<Queue>();
    q->id = file->next_queue++;
    q->prio = a.prio;
    q->flags = a.flags;
    file->queues[q->id] = q;
    a.id = q->id;
    return 0;
}

int MsmKernel::submitqueue_close_call(FileId f, uint32_t id) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (id == 0) // the default queue cannot be removed
        return -ENOENT;
    // Unretired submits keep the queue object alive; the id is gone at once.
    return file->queues.erase(id) ? 0 : -ENOENT;
}

int MsmKernel::submitqueue_query_call(FileId f, drm_msm_submitqueue_query& a, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (a.pad)
        return -EINVAL;
    auto it = file->queues.find(a.id);
    if (it == file->queues.end())
        return -ENOENT;
    if (a.param != MSM_SUBMITQUEUE_PARAM_FAULTS)
        return -EINVAL;
    uint32_t faults = it->second->faults;
    if (a.len == 0) {
        a.len = sizeof(faults); // "tell me the size" (not copied back: the ioctl is _IOW)
        return 0;
    }
    uint32_t n = std::min<uint32_t>(a.len, sizeof(faults));
    if (data.size() < n)
        return -EFAULT;
    std::memcpy(data.data(), &faults, n);
    a.len = n;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// submit, fences, the GPU clock

int MsmKernel::gem_submit_call(FileId f, drm_msm_gem_submit& a, std::span<const drm_msm_gem_submit_bo> bos,
                          std::span<const drm_msm_gem_submit_cmd> cmds, uint64_t* submit_seq) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    if (cfg_.clock == ClockMode::RealTime)
        retire_due_locked(now_locked());
    if (a.pad)
        return -EINVAL;
    if ((a.flags & MSM_PIPE_ID_MASK) != MSM_PIPE_3D0)
        return -EINVAL;
    if ((a.flags & ~MSM_PIPE_ID_MASK) & ~MSM_SUBMIT_FLAGS)
        return -EINVAL;
    if (a.flags & MSM_SUBMIT_SUDO) // needs CAP_SYS_RAWIO + a debug kernel
        return -EINVAL;
    auto qit = file->queues.find(a.queueid);
    if (qit == file->queues.end())
        return -ENOENT;
    std::shared_ptr<Queue> q = qit->second;
    if ((a.flags & MSM_SUBMIT_FENCE_FD_IN) && a.fence_fd < 0)
        return -EINVAL; // sync_file_get_fence() fails
    if (((a.flags & MSM_SUBMIT_SYNCOBJ_IN) && a.nr_in_syncobjs) ||
        ((a.flags & MSM_SUBMIT_SYNCOBJ_OUT) && a.nr_out_syncobjs))
        return -EINVAL; // the model has no syncobjs
    if (bos.size() != a.nr_bos || cmds.size() != a.nr_cmds)
        return -EFAULT;

    auto s = std::make_unique<Submit>();
    s->file = f;
    s->queue = q;
    // submit_lookup_objects: flag check, handle lookup (-EINVAL), each object once.
    std::set<const Object*> seen;
    for (uint32_t i = 0; i < a.nr_bos; i++) {
        const auto& b = bos[i];
        if ((b.flags & ~MSM_SUBMIT_BO_FLAGS) || !(b.flags & (MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE)))
            return -EINVAL;
        Object* obj = lookup_locked(*file, b.handle);
        if (!obj)
            return -EINVAL; // "invalid handle %u at index %u"
        if (!seen.insert(obj).second)
            return -EINVAL; // "already on submit list"
        s->bos.push_back({obj, b.flags, b.presumed});
    }
    // submit_lookup_cmds + the per-cmd checks of msm_ioctl_gem_submit.
    for (const auto& c : cmds) {
        if (c.type != MSM_SUBMIT_CMD_BUF && c.type != MSM_SUBMIT_CMD_IB_TARGET_BUF &&
            c.type != MSM_SUBMIT_CMD_CTX_RESTORE_BUF)
            return -EINVAL;
        if (c.size % 4 || c.submit_offset % 4)
            return -EINVAL;
        if (c.nr_relocs) // a6xx: relocs not allowed
            return -EINVAL;
        if (c.submit_idx >= a.nr_bos)
            return -EINVAL; // "invalid buffer index"
        const Object* obj = s->bos[c.submit_idx].obj;
        if (c.size == 0 || uint64_t(c.submit_offset) + c.size > obj->size)
            return -EINVAL; // "invalid cmdstream size"
    }
    if (a.flags & MSM_SUBMIT_FENCE_SN_IN) {
        // F7 / §2.8: non-zero and not an unretired fence of this queue.
        if (a.fence == 0 || q->unretired.count(a.fence))
            return -EINVAL;
    }
    if (int e = injected_locked(KernelOp::Submit, f))
        return e;
    // submit_pin_objects: a bo without a vma gets a kernel-chosen iova now (§12.3).
    for (auto& bo : s->bos) {
        uint64_t iova = 0;
        if (int e = get_vma_locked(*file, *bo.obj, 0, UINT64_MAX, &iova))
            return e;
    }
    uint32_t fence;
    if (a.flags & MSM_SUBMIT_FENCE_SN_IN) {
        fence = a.fence;
    } else {
        do {
            q->next_fence = (q->next_fence % 0x7fffffffu) + 1; // cyclic in 1..INT_MAX
        } while (q->unretired.count(q->next_fence));
        fence = q->next_fence;
    }
    a.fence = fence;
    if (a.flags & MSM_SUBMIT_FENCE_FD_OUT)
        a.fence_fd = -1; // no sync_file in the model: track (queue, fence) instead
    s->fence = fence;
    q->last_fence = fence;
    for (auto& bo : s->bos) {
        bo.obj->refs++;
        bo.obj->pins[f]++;
        if (bo.flags & MSM_SUBMIT_BO_WRITE)
            bo.obj->writers++;
        else
            bo.obj->readers++;
    }
    uint64_t now = now_locked();
    uint64_t start = std::max(now, ring_busy_until_);
    s->due_us = start + (cfg_.gpu_exec_us_fn ? cfg_.gpu_exec_us_fn() : cfg_.gpu_exec_us);
    ring_busy_until_ = s->due_us;
    // Fault check at queue time: each bo mapped at exactly the presumed iova.
    for (auto& bo : s->bos) {
        uint64_t iova = bo.obj->vmas[f].iova;
        if (bo.presumed == 0) {
            if (cfg_.require_presumed)
                fault_locked(*s, iova, "bo entry without a presumed iova");
        } else if (iova != bo.presumed) {
            fault_locked(*s, bo.presumed, "bo not mapped at its presumed iova");
        }
    }
    s->seq = next_seq_++;
    if (submit_seq)
        *submit_seq = s->seq;
    q->unretired[fence] = s.get();
    file->pending++;
    ring_.push_back(std::move(s));
    lk.unlock();
    cv_.notify_all();
    return 0;
}

bool MsmKernel::queue_fence_signaled_locked(const Queue& q, uint32_t fence) const {
    return q.unretired.count(fence) == 0;
}

int MsmKernel::wait_fence_call(FileId f, const drm_msm_wait_fence& a) {
    std::unique_lock lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    uint32_t valid = cfg_.drm_minor >= 11 ? MSM_WAIT_FENCE_BOOST : 0;
    if (a.flags & ~valid)
        return -EINVAL;
    auto qit = file->queues.find(a.queueid);
    if (qit == file->queues.end())
        return -ENOENT;
    std::shared_ptr<Queue> q = qit->second;
    if (fence_after(a.fence, q->last_fence))
        return -EINVAL; // "waiting on invalid fence"
    auto signaled = [&] {
        if (cfg_.clock == ClockMode::RealTime)
            retire_due_locked(now_locked());
        return queue_fence_signaled_locked(*q, a.fence);
    };
    if (signaled())
        return 0;
    int64_t deadline = timespec_ns(a.timeout);
    if (cfg_.clock == ClockMode::Manual || deadline <= static_cast<int64_t>(mono_ns()))
        return -ETIMEDOUT;
    auto tp = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline));
    while (!signaled()) {
        if (cv_.wait_until(lk, tp) == std::cv_status::timeout && !signaled())
            return -ETIMEDOUT;
    }
    return 0;
}

uint64_t MsmKernel::now_locked() const {
    if (cfg_.clock == ClockMode::Manual)
        return manual_now_;
    return (mono_ns() - epoch_ns_) / 1000;
}

uint64_t MsmKernel::now_us() const {
    std::lock_guard lk(mu_);
    return now_locked();
}

void MsmKernel::retire_one_locked(Submit& s) {
    for (auto& bo : s.bos) {
        Object& o = *bo.obj;
        if (bo.flags & MSM_SUBMIT_BO_WRITE)
            o.writers--;
        else
            o.readers--;
        auto p = o.pins.find(s.file);
        if (p != o.pins.end() && --p->second == 0) {
            o.pins.erase(p);
            if (o.release_when_idle.erase(s.file))
                remove_vma_locked(s.file, o, "GEM_CLOSE (VM_BIND era), now idle");
        }
    }
    s.queue->unretired.erase(s.fence);
    retired_seq_ = s.seq;
    events_.push_back({s.file, s.queue->id, s.fence, s.faulted});
    // Drop the submit's object references last: freeing releases vmas (and checks other submits).
    for (auto& bo : s.bos)
        unref_locked(*bo.obj);
    auto fit = files_.find(s.file);
    if (fit != files_.end()) {
        fit->second->pending--;
        maybe_destroy_file_locked(s.file);
    }
}

void MsmKernel::retire_due_locked(uint64_t now) {
    bool any = false;
    while (!ring_.empty() && ring_.front()->due_us <= now) {
        std::unique_ptr<Submit> s = std::move(ring_.front());
        ring_.pop_front();
        retire_one_locked(*s);
        any = true;
    }
    if (any)
        cv_.notify_all();
}

void MsmKernel::deliver_events(std::unique_lock<std::mutex>& lk) {
    if (events_.empty())
        return;
    auto events = std::move(events_);
    events_.clear();
    auto listener = listener_;
    lk.unlock();
    if (listener)
        listener(events);
    lk.lock();
}

void MsmKernel::advance(uint64_t us) {
    std::unique_lock lk(mu_);
    if (cfg_.clock == ClockMode::Manual)
        manual_now_ += us;
    retire_due_locked(now_locked());
    deliver_events(lk);
}

void MsmKernel::retire_all() {
    std::unique_lock lk(mu_);
    while (!ring_.empty()) {
        if (cfg_.clock == ClockMode::Manual)
            manual_now_ = std::max(manual_now_, ring_.front()->due_us);
        std::unique_ptr<Submit> s = std::move(ring_.front());
        ring_.pop_front();
        retire_one_locked(*s);
    }
    cv_.notify_all();
    deliver_events(lk);
}

void MsmKernel::gpu_thread_main() {
    std::unique_lock lk(mu_);
    while (!stop_) {
        retire_due_locked(now_locked());
        deliver_events(lk);
        if (stop_)
            break;
        if (!events_.empty())
            continue;
        if (ring_.empty()) {
            cv_.wait(lk);
        } else {
            auto due = std::chrono::steady_clock::time_point(
                std::chrono::nanoseconds(epoch_ns_ + ring_.front()->due_us * 1000));
            cv_.wait_until(lk, due);
        }
    }
}

size_t MsmKernel::pending_submits() const {
    std::lock_guard lk(mu_);
    return ring_.size();
}

bool MsmKernel::fence_retired(FileId f, uint32_t queue_id, uint32_t fence) const {
    std::lock_guard lk(mu_);
    for (auto& s : ring_)
        if (s->file == f && s->queue->id == queue_id && s->fence == fence)
            return false;
    return true;
}

bool MsmKernel::submit_retired(uint64_t seq) const {
    std::lock_guard lk(mu_);
    return seq <= retired_seq_;
}

void MsmKernel::set_fail_hook(std::function<int(KernelOp, FileId)> hook) {
    std::lock_guard lk(mu_);
    cfg_.fail_hook = std::move(hook);
}

void MsmKernel::set_retire_listener(std::function<void(const std::vector<RetiredSubmit>&)> l) {
    std::lock_guard lk(mu_);
    listener_ = std::move(l);
}

// ---------------------------------------------------------------------------------------------
// dma-buf model and CPU mappings

int MsmKernel::ensure_backing_locked(Object& obj) {
    if (obj.map)
        return 0;
    int fd = memfd_create("fdnc-gem", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, static_cast<off_t>(obj.size)) != 0) { // sparse: no RAM until touched
        int e = -errno;
        close(fd);
        return e;
    }
    void* p = mmap(nullptr, obj.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct stat st {};
    fstat(fd, &st);
    obj.memfd = fd;
    obj.map = p;
    obj.dev = st.st_dev;
    obj.ino = st.st_ino;
    return 0;
}

int MsmKernel::prime_handle_to_fd_call(FileId f, uint32_t handle, int* fd) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    if (int e = ensure_backing_locked(*obj))
        return e;
    int nfd = fcntl(obj->memfd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    if (!obj->exported) {
        obj->exported = true;
        exported_.insert(obj->id);
        obj->refs++; // the dma-buf holds the object (§1.4: its ranges stay reserved)
    }
    *fd = nfd;
    return 0;
}

int MsmKernel::prime_fd_to_handle_call(FileId f, int fd, uint32_t* handle) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0)
        return -EBADF;
    for (uint64_t oid : exported_) {
        auto oit = objects_.find(oid);
        if (oit == objects_.end())
            continue;
        Object* obj = oit->second.get();
        if (obj->dev != st.st_dev || obj->ino != st.st_ino)
            continue;
        for (auto& [h, id] : file->handles) {
            if (id == oid) { // drm_prime: one handle per object per file
                *handle = h;
                return 0;
            }
        }
        *handle = add_handle_locked(*file, *obj);
        return 0;
    }
    return -EINVAL; // not a dma-buf of this device
}

// An exported object whose only reference is the dma-buf dies when no fd of it is open anymore.
// The model cannot hook close(), so it looks for such fds in /proc/self/fd when it matters
// (before allocating memory or iova space).
void MsmKernel::reap_orphan_exports_locked() {
    std::vector<Object*> orphans;
    for (uint64_t oid : exported_) {
        auto it = objects_.find(oid);
        if (it != objects_.end() && it->second->refs == 1)
            orphans.push_back(it->second.get());
    }
    if (orphans.empty())
        return;
    std::set<std::pair<dev_t, ino_t>> open;
    std::set<int> own;
    for (auto* o : orphans)
        own.insert(o->memfd);
    if (DIR* d = opendir("/proc/self/fd")) {
        int dfd = dirfd(d);
        while (dirent* e = readdir(d)) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] == '.' || fd == dfd || own.count(fd))
                continue;
            // stat() through the /proc link, not fstat(fd): the fd belongs to whichever thread
            // opened it and may be closed or reused meanwhile; the path lookup only reads
            // what the link points at (and TSan rightly flagged fstat on other threads' fds).
            char path[64];
            std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            struct stat st {};
            if (stat(path, &st) == 0)
                open.insert({st.st_dev, st.st_ino});
        }
        closedir(d);
    } else {
        return; // cannot tell: keep them alive
    }
    for (auto* o : orphans) {
        if (!open.count({o->dev, o->ino})) {
            o->exported = false;
            exported_.erase(o->id);
            unref_locked(*o);
        }
    }
}

int MsmKernel::map_object_call(FileId f, uint32_t handle, void** ptr, uint64_t* size) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    if (int e = ensure_backing_locked(*obj))
        return e;
    *ptr = obj->map;
    *size = obj->size;
    return 0;
}

int MsmKernel::cpu_map(FileId f, uint64_t offset, uint64_t len, int* fd, uint64_t* object_id) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    // GET_OFFSET hands out object id << 20 (the fake mmap offset space).
    auto it = objects_.find(offset >> 20);
    if ((offset & ((1ull << 20) - 1)) || it == objects_.end())
        return -EINVAL;
    Object& obj = *it->second;
    if (len == 0 || len > obj.size)
        return -EINVAL;
    bool allowed = false;
    for (auto& [h, oid] : file->handles)
        allowed |= oid == obj.id;
    if (!allowed)
        return -EACCES; // drm_vma_node_is_allowed()
    if (int e = ensure_backing_locked(obj))
        return e;
    int nfd = fcntl(obj.memfd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    obj.refs++; // the mapping holds the object (and, before VM_BIND, its ranges: §12.3)
    *fd = nfd;
    *object_id = obj.id;
    return 0;
}

void MsmKernel::cpu_unmap(uint64_t object_id) {
    std::lock_guard lk(mu_);
    auto it = objects_.find(object_id);
    if (it != objects_.end())
        unref_locked(*it->second);
}

int MsmKernel::object_size(FileId f, uint32_t handle, uint64_t* size) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    *size = obj->size;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// introspection

uint64_t MsmKernel::global_faults() const {
    std::lock_guard lk(mu_);
    return global_faults_;
}

uint64_t MsmKernel::file_faults(FileId f) const {
    std::lock_guard lk(mu_);
    auto it = files_.find(f);
    return it == files_.end() ? 0 : it->second->faults;
}

std::vector<FaultRecord> MsmKernel::fault_log() const {
    std::lock_guard lk(mu_);
    return fault_log_;
}

std::vector<MappingInfo> MsmKernel::mappings(FileId f) const {
    std::lock_guard lk(mu_);
    std::vector<MappingInfo> out;
    auto it = files_.find(f);
    if (it == files_.end())
        return out;
    for (auto& [iova, v] : it->second->vm->ranges) {
        auto o = objects_.find(v.second);
        // The global VM is shared: only report this file's vmas.
        if (o == objects_.end())
            continue;
        auto vm = o->second->vmas.find(f);
        if (vm == o->second->vmas.end() || vm->second.iova != iova)
            continue;
        auto p = o->second->pins.find(f);
        out.push_back({iova, v.first - iova, v.second, p == o->second->pins.end() ? 0u : p->second});
    }
    return out;
}

bool MsmKernel::mappings_overlap(FileId f) const {
    std::lock_guard lk(mu_);
    auto it = files_.find(f);
    if (it == files_.end())
        return false;
    uint64_t prev_end = 0;
    for (auto& [iova, v] : it->second->vm->ranges) {
        if (iova < prev_end)
            return true;
        prev_end = v.first;
    }
    return false;
}

size_t MsmKernel::live_objects() const {
    std::lock_guard lk(mu_);
    return objects_.size();
}

size_t MsmKernel::backed_objects() const {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (auto& [id, obj] : objects_)
        n += obj->map != nullptr;
    return n;
}

uint64_t MsmKernel::memory_used() const {
    std::lock_guard lk(mu_);
    return memory_used_;
}

void MsmKernel::set_memory_limit(uint64_t bytes) {
    std::lock_guard lk(mu_);
    cfg_.memory_limit = bytes;
}

void MsmKernel::set_era(KernelEra era) {
    std::lock_guard lk(mu_);
    cfg_.era = era;
}

} // namespace fdnc::host
