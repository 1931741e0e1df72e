// The msm kernel model's private state: GEM objects, submitqueues, submits and files, and the
// helpers its sections share. Private to src/host_sim/msm_kernel*.cpp, one file per section:
//   msm_kernel.cpp                files, params, fault injection
//   msm_kernel_address_space.cpp  vmas and faults (the iova-safety oracle), their introspection
//   msm_kernel_objects.cpp        GEM objects (GEM_NEW / GEM_INFO / GEM_CLOSE / CPU_PREP)
//   msm_kernel_submit.cpp         submitqueues, submits, fences and the GPU clock
//   msm_kernel_dmabuf.cpp         the dma-buf model and CPU mappings
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "host_sim/msm_kernel.h"
#include "host_sim/msm_kernel_address_space.h"
#include "util/seqno.h"

namespace fdnc::host {

namespace kernel_detail {

inline constexpr int kEtooSmall = 525; // kernel-internal ETOOSMALL, returned by GET_NAME
inline constexpr uint64_t kGlobalVmStart = 16ull << 20; // §1.3 global VM: max(16 MiB, aperture start)
inline constexpr uint64_t kGlobalVmSize = 0xfeffffffull;

inline uint64_t mono_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// drm_msm_timespec is absolute CLOCK_MONOTONIC (steady_clock on Linux).
inline int64_t timespec_ns(const wire::drm_msm_timespec& t) { return t.tv_sec * 1000000000ll + t.tv_nsec; }

inline bool isprint_ascii(uint8_t c) { return c >= 0x20 && c < 0x7f; }


} // namespace kernel_detail

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
    // Ever exported: a mapping made through that fd can outlive every fd of it (the model frees
    // the object once no fd is open), so its memory is never handed to another object.
    bool shared = false;
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

} // namespace fdnc::host
