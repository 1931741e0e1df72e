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
// vmas and faults: the iova-safety oracle (see msm_kernel.h "Faults")

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
