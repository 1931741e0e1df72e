// MsmRenderer's private state (a resource, a context) and the helpers its files share. Private to
// src/host_sim/msm_renderer*.cpp:
//   msm_renderer.cpp            the handler table, set-up, logging, capset, contexts, introspection
//   msm_renderer_resources.cpp  blobs and resources (§6.2)
//   msm_renderer_stream.cpp     fences (§6.5) and the ccmd stream (§6.1, §6.3)
//   msm_renderer_handlers.cpp   the MSM_CCMD handlers (§6.4)
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <span>
#include <vector>

#include "host_sim/msm_renderer.h"

namespace fdnc::host {

namespace renderer_detail {

inline constexpr uint32_t kCapsetSize = sizeof(wire::virgl_renderer_capset_drm);

template <class T> inline T load(std::span<const uint8_t> s, size_t off = 0) {
    T v{};
    if (s.size() >= off + sizeof(T))
        std::memcpy(&v, s.data() + off, sizeof(T));
    return v;
}

template <class T> inline void put(std::span<uint8_t> s, const T& v, size_t off = 0) {
    if (s.size() >= off + sizeof(T))
        std::memcpy(s.data() + off, &v, sizeof(T));
}

inline wire::drm_msm_timespec mono_now() {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::steady_clock::now().time_since_epoch())
                  .count();
    return {ns / 1000000000, ns % 1000000000};
}

} // namespace renderer_detail

struct MsmRenderer::Resource {
    enum class Kind { Shmem, Gem };
    Kind kind = Kind::Gem;
    uint32_t res_id = 0;
    uint32_t handle = 0; // GEM handle in the context's file (B1: never leaves the host)
    uint64_t size = 0;   // recorded size: GEM_NEW's (unrounded, B5) or lseek of an import (B14)
    uint32_t blob_flags = 0;
    bool exportable = false; // B13
    int shared_fd = -1;      // B11: SHAREABLE blobs are exported at creation
    // §12.1: the host maps an object (GET_OFFSET + mmap) on first use and keeps the mapping until
    // the object is freed; the kernel model owns the memory, so only the pointer is kept here.
    void* map = nullptr;
    uint64_t map_size = 0;
};

struct MsmRenderer::Context {
    uint32_t id = 0;
    FileId file = 0;
    std::map<uint32_t, Resource> resources;
    struct Parked {
        uint32_t handle;
        uint64_t size;
        uint32_t flags;
    };
    std::map<uint32_t, Parked> blobs; // blob_id -> object from GEM_NEW (B5)
    std::vector<uint32_t> leaked;     // removed from the blob table but never bound (B10 failure)
    uint8_t* shmem = nullptr;
    uint64_t shmem_size = 0;
    int shmem_fd = -1;
    uint32_t shmem_res = 0;
    std::map<uint32_t, uint32_t> queue_prio; // F2: learned from SUBMITQUEUE_NEW, never removed
    std::vector<uint64_t> timeline_last;     // F3: per priority, kernel submit seq (0 = none)
    struct PendingFence {
        uint32_t ring;
        uint64_t fence_id;
        uint64_t submit_seq;
    };
    std::deque<PendingFence> pending;

    wire::msm_shmem* page() const { return reinterpret_cast<wire::msm_shmem*>(shmem); }
    uint32_t rsp_area_size() const { return shmem ? uint32_t(shmem_size - wire::kShmemRspMemOffset) : 0; }
};

} // namespace fdnc::host
