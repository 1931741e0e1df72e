// Linux generic _IOC encoding (arm, arm64, x86) and the generic DRM ioctls fdnc uses.
// PROTOCOL.md §2: dir bits 31:30 (W=1, R=2), size 29:16, type 15:8 = 'd', nr 7:0.
// Names avoid libdrm's drm.h macros (DRM_IOCTL_*, DRM_COMMAND_BASE) so both can be included.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fdnc::wire {

inline constexpr uint32_t kIocWrite = 1u;
inline constexpr uint32_t kIocRead = 2u;
inline constexpr uint32_t kDrmIoctlType = 0x64;   // 'd'
inline constexpr uint32_t kDrmCommandBase = 0x40; // driver ioctls start here

constexpr uint32_t ioc(uint32_t dir, uint32_t type, uint32_t nr, uint32_t size) {
    return (dir << 30) | (size << 16) | (type << 8) | nr;
}
constexpr uint32_t ioc_dir(uint32_t req) { return req >> 30; }
constexpr uint32_t ioc_size(uint32_t req) { return (req >> 16) & 0x3fff; }
constexpr uint32_t ioc_type(uint32_t req) { return (req >> 8) & 0xff; }
constexpr uint32_t ioc_nr(uint32_t req) { return req & 0xff; }

// A driver ioctl of the DRM device: nr is relative to kDrmCommandBase.
constexpr uint32_t drm_driver_iowr(uint32_t nr, uint32_t size) {
    return ioc(kIocRead | kIocWrite, kDrmIoctlType, kDrmCommandBase + nr, size);
}
constexpr uint32_t drm_driver_iow(uint32_t nr, uint32_t size) {
    return ioc(kIocWrite, kDrmIoctlType, kDrmCommandBase + nr, size);
}

// Generic DRM core structs (drm.h) fdnc uses directly.
struct drm_gem_close_arg {
    uint32_t handle;
    uint32_t pad;
};
static_assert(sizeof(drm_gem_close_arg) == 8);

struct drm_prime_handle_arg {
    uint32_t handle;
    uint32_t flags; // DRM_CLOEXEC | DRM_RDWR
    int32_t fd;
};
static_assert(sizeof(drm_prime_handle_arg) == 12);
static_assert(offsetof(drm_prime_handle_arg, fd) == 8);

struct drm_event_hdr {
    uint32_t type;
    uint32_t length;
};
static_assert(sizeof(drm_event_hdr) == 8);

inline constexpr uint32_t kDrmIoctlGemClose = ioc(kIocWrite, kDrmIoctlType, 0x09, 8);
inline constexpr uint32_t kDrmIoctlPrimeHandleToFd = ioc(kIocRead | kIocWrite, kDrmIoctlType, 0x2d, 12);
inline constexpr uint32_t kDrmIoctlPrimeFdToHandle = ioc(kIocRead | kIocWrite, kDrmIoctlType, 0x2e, 12);
static_assert(kDrmIoctlGemClose == 0x40086409);
static_assert(kDrmIoctlPrimeHandleToFd == 0xC00C642D);
static_assert(kDrmIoctlPrimeFdToHandle == 0xC00C642E);

inline constexpr uint32_t kDrmCloexec = 02000000; // O_CLOEXEC
inline constexpr uint32_t kDrmRdwr = 02;          // O_RDWR

} // namespace fdnc::wire
