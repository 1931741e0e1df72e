#include "host_sim/msm_kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_sim/msm_kernel_internal.h"

namespace fdnc::host {

using namespace fdnc::wire;
using namespace kernel_detail;

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

} // namespace fdnc::host
