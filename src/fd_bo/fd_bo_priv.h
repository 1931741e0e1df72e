// fd_bo's private header: what the core's own files share and a driver never needs (Mesa's
// freedreno_priv.h). The public contract is fd_bo.h; device.h, bo.h and pipe.h hold the class
// definitions, whose "core-private" members are for the files including this header.
//   device.cpp          open, init, teardown, status, retire, pipes, stats
//   device_iova.cpp     the iova lifecycle: allocation with its retry ladder, the quarantine's
//                       release hook, destroy and cache trims
//   device_bo_new.cpp   bo creation: bo_new, bo_new_at, bo_import (one epilogue), host-mode iova
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "fd_bo/bo.h"
#include "fd_bo/bo_cache.h"
#include "fd_bo/bo_heap.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"

namespace fdnc::fd_bo_priv {

// Largest bo the device accepts (bo_new, bo_new_at, bo_import): 1 TiB, beyond any Adreno VA range.
inline constexpr uint64_t kMaxBoSize = uint64_t{1} << 40;

inline int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

inline uint64_t page_align(uint64_t size) { return (size + 4095) & ~uint64_t{4095}; }

inline uint32_t load_shmem_u32(const void* shmem, size_t off) {
    return __atomic_load_n(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(shmem) + off),
                           __ATOMIC_ACQUIRE);
}

} // namespace fdnc::fd_bo_priv
