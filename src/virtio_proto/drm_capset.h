// The DRM native-context capset (virtio-gpu capset id 6, version 0), PROTOCOL.md §4.
// fdnc uses virglrenderer 1.3's 160-byte layout, a superset of Mesa 24.2's 80-byte one: every
// field shared by both sits at the same offset, and a shorter host capset leaves the tail zero.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fdnc::wire {

inline constexpr uint32_t kDrmCapsetWireFormatVersion = 2;

// §4.2
inline constexpr uint32_t VIRTGPU_DRM_CONTEXT_MSM = 1;
inline constexpr uint32_t VIRTGPU_DRM_CONTEXT_AMDGPU = 2;
inline constexpr uint32_t VIRTGPU_DRM_CONTEXT_I915 = 3;
inline constexpr uint32_t VIRTGPU_DRM_CONTEXT_ASAHI = 4;
inline constexpr uint32_t VIRTGPU_DRM_CONTEXT_PANFROST = 5;

// §4.3 boolean caps added after the first protocol version.
inline constexpr uint32_t VIRTGPU_CAP_BOOL_UNSUPPORTED_BY_HOST = 0;
inline constexpr uint32_t VIRTGPU_CAP_BOOL_TRUE = 1;
inline constexpr uint32_t VIRTGPU_CAP_BOOL_FALSE = 0xFFFFFFFFu;

struct virgl_renderer_capset_drm_msm {
    uint32_t has_cached_coherent; // plain 0/1, predates the bool encoding
    uint32_t priorities;
    uint64_t va_start;
    uint64_t va_size;
    uint32_t gpu_id;
    uint32_t gmem_size;
    uint64_t gmem_base;
    uint64_t chip_id;
    uint32_t max_freq; // Mesa 24.2's struct ends after this field
    uint32_t highest_bank_bit;
    uint64_t ubwc_swizzle;
    uint64_t macrotile_mode;
    uint32_t has_raytracing; // VIRTGPU_CAP_BOOL_*
    uint32_t has_preemption; // VIRTGPU_CAP_BOOL_*
    uint64_t uche_trap_base;
};
static_assert(sizeof(virgl_renderer_capset_drm_msm) == 88);

struct virgl_renderer_capset_drm {
    uint32_t wire_format_version;
    uint32_t version_major;
    uint32_t version_minor;
    uint32_t version_patchlevel;
    uint32_t context_type;
    uint32_t pad;
    union {
        virgl_renderer_capset_drm_msm msm;
        uint8_t union_size_[136]; // set by virglrenderer's amdgpu member (no amdgpu headers)
    } u;
};
static_assert(sizeof(virgl_renderer_capset_drm) == 160);
static_assert(offsetof(virgl_renderer_capset_drm, wire_format_version) == 0);
static_assert(offsetof(virgl_renderer_capset_drm, version_major) == 4);
static_assert(offsetof(virgl_renderer_capset_drm, version_minor) == 8);
static_assert(offsetof(virgl_renderer_capset_drm, version_patchlevel) == 12);
static_assert(offsetof(virgl_renderer_capset_drm, context_type) == 16);
static_assert(offsetof(virgl_renderer_capset_drm, pad) == 20);
static_assert(offsetof(virgl_renderer_capset_drm, u) == 24);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.has_cached_coherent) == 24);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.priorities) == 28);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.va_start) == 32);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.va_size) == 40);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.gpu_id) == 48);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.gmem_size) == 52);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.gmem_base) == 56);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.chip_id) == 64);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.max_freq) == 72);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.highest_bank_bit) == 76);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.ubwc_swizzle) == 80);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.macrotile_mode) == 88);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.has_raytracing) == 96);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.has_preemption) == 100);
static_assert(offsetof(virgl_renderer_capset_drm, u.msm.uche_trap_base) == 104);

// Mesa 24.2 guests ask for 80 bytes (its struct); a host copies min(guest, host) bytes.
inline constexpr uint32_t kMesa242CapsetSize = 80;

} // namespace fdnc::wire
