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
    // With no client left, no fd of the model's stays open for memory nobody will reuse soon (a
    // server's fd count returns to idle when its client leaves: the realhost suite checks it).
    if (files_.empty())
        spare_backings_.clear();
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
    const Backing backing{obj.memfd, obj.map, obj.size, obj.dev, obj.ino};
    if (cfg_.recycle_backings && obj.map && !obj.shared)
        spare_backings_.give(backing);
    else
        BackingPool::release(backing);
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

} // namespace fdnc::host
