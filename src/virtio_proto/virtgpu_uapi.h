// The guest kernel's virtio-gpu uapi (include/uapi/drm/virtgpu_drm.h) subset fdnc uses, as fdnc's
// own structs. Layouts and numbers from PROTOCOL.md §3 and §10.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ioctl_encoding.h"

namespace fdnc::wire {

// §3.2 GETPARAM ids
inline constexpr uint64_t VIRTGPU_PARAM_3D_FEATURES = 1;
inline constexpr uint64_t VIRTGPU_PARAM_CAPSET_QUERY_FIX = 2;
inline constexpr uint64_t VIRTGPU_PARAM_RESOURCE_BLOB = 3;
inline constexpr uint64_t VIRTGPU_PARAM_HOST_VISIBLE = 4;
inline constexpr uint64_t VIRTGPU_PARAM_CROSS_DEVICE = 5;
inline constexpr uint64_t VIRTGPU_PARAM_CONTEXT_INIT = 6;
inline constexpr uint64_t VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs = 7;
inline constexpr uint64_t VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME = 8;

struct drm_virtgpu_getparam {
    uint64_t param;
    uint64_t value; // user pointer; the kernel writes an int (4 B) through it
};
static_assert(sizeof(drm_virtgpu_getparam) == 16);
static_assert(offsetof(drm_virtgpu_getparam, value) == 8);

// §3.3
inline constexpr uint32_t VIRTGPU_CAPSET_VIRGL = 1;
inline constexpr uint32_t VIRTGPU_CAPSET_VIRGL2 = 2;
inline constexpr uint32_t VIRTGPU_CAPSET_GFXSTREAM_VULKAN = 3;
inline constexpr uint32_t VIRTGPU_CAPSET_VENUS = 4;
inline constexpr uint32_t VIRTGPU_CAPSET_CROSS_DOMAIN = 5;
inline constexpr uint32_t VIRTGPU_CAPSET_DRM = 6;

struct drm_virtgpu_get_caps {
    uint32_t cap_set_id;
    uint32_t cap_set_ver;
    uint64_t addr;
    uint32_t size;
    uint32_t pad;
};
static_assert(sizeof(drm_virtgpu_get_caps) == 24);
static_assert(offsetof(drm_virtgpu_get_caps, cap_set_ver) == 4);
static_assert(offsetof(drm_virtgpu_get_caps, addr) == 8);
static_assert(offsetof(drm_virtgpu_get_caps, size) == 16);
static_assert(offsetof(drm_virtgpu_get_caps, pad) == 20);

// §3.4
inline constexpr uint64_t VIRTGPU_CONTEXT_PARAM_CAPSET_ID = 0x0001;
inline constexpr uint64_t VIRTGPU_CONTEXT_PARAM_NUM_RINGS = 0x0002;
inline constexpr uint64_t VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK = 0x0003;
inline constexpr uint64_t VIRTGPU_CONTEXT_PARAM_DEBUG_NAME = 0x0004;
inline constexpr uint32_t kVirtgpuMaxRings = 64;
inline constexpr uint32_t VIRTGPU_EVENT_FENCE_SIGNALED = 0x90000000;

struct drm_virtgpu_context_set_param {
    uint64_t param;
    uint64_t value;
};
static_assert(sizeof(drm_virtgpu_context_set_param) == 16);
static_assert(offsetof(drm_virtgpu_context_set_param, value) == 8);

struct drm_virtgpu_context_init {
    uint32_t num_params;
    uint32_t pad;
    uint64_t ctx_set_params;
};
static_assert(sizeof(drm_virtgpu_context_init) == 16);
static_assert(offsetof(drm_virtgpu_context_init, pad) == 4);
static_assert(offsetof(drm_virtgpu_context_init, ctx_set_params) == 8);

// §3.5
inline constexpr uint32_t VIRTGPU_BLOB_MEM_GUEST = 0x0001;
inline constexpr uint32_t VIRTGPU_BLOB_MEM_HOST3D = 0x0002;
inline constexpr uint32_t VIRTGPU_BLOB_MEM_HOST3D_GUEST = 0x0003;
inline constexpr uint32_t VIRTGPU_BLOB_FLAG_USE_MAPPABLE = 0x0001;
inline constexpr uint32_t VIRTGPU_BLOB_FLAG_USE_SHAREABLE = 0x0002;
inline constexpr uint32_t VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE = 0x0004;
inline constexpr uint32_t VIRTGPU_BLOB_FLAGS =
    VIRTGPU_BLOB_FLAG_USE_MAPPABLE | VIRTGPU_BLOB_FLAG_USE_SHAREABLE | VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE;

struct drm_virtgpu_resource_create_blob {
    uint32_t blob_mem;
    uint32_t blob_flags;
    uint32_t bo_handle;
    uint32_t res_handle;
    uint64_t size;
    uint32_t pad;
    uint32_t cmd_size;
    uint64_t cmd;
    uint64_t blob_id;
};
static_assert(sizeof(drm_virtgpu_resource_create_blob) == 48);
static_assert(offsetof(drm_virtgpu_resource_create_blob, blob_flags) == 4);
static_assert(offsetof(drm_virtgpu_resource_create_blob, bo_handle) == 8);
static_assert(offsetof(drm_virtgpu_resource_create_blob, res_handle) == 12);
static_assert(offsetof(drm_virtgpu_resource_create_blob, size) == 16);
static_assert(offsetof(drm_virtgpu_resource_create_blob, pad) == 24);
static_assert(offsetof(drm_virtgpu_resource_create_blob, cmd_size) == 28);
static_assert(offsetof(drm_virtgpu_resource_create_blob, cmd) == 32);
static_assert(offsetof(drm_virtgpu_resource_create_blob, blob_id) == 40);

// §3.6
inline constexpr uint32_t VIRTGPU_EXECBUF_FENCE_FD_IN = 0x01;
inline constexpr uint32_t VIRTGPU_EXECBUF_FENCE_FD_OUT = 0x02;
inline constexpr uint32_t VIRTGPU_EXECBUF_RING_IDX = 0x04;

struct drm_virtgpu_execbuffer_syncobj {
    uint32_t handle;
    uint32_t flags;
    uint64_t point;
};
static_assert(sizeof(drm_virtgpu_execbuffer_syncobj) == 16);
static_assert(offsetof(drm_virtgpu_execbuffer_syncobj, point) == 8);

struct drm_virtgpu_execbuffer {
    uint32_t flags;
    uint32_t size;
    uint64_t command;
    uint64_t bo_handles;
    uint32_t num_bo_handles;
    int32_t fence_fd;
    uint32_t ring_idx;
    uint32_t syncobj_stride;
    uint32_t num_in_syncobjs;
    uint32_t num_out_syncobjs;
    uint64_t in_syncobjs;
    uint64_t out_syncobjs;
};
static_assert(sizeof(drm_virtgpu_execbuffer) == 64);
static_assert(offsetof(drm_virtgpu_execbuffer, size) == 4);
static_assert(offsetof(drm_virtgpu_execbuffer, command) == 8);
static_assert(offsetof(drm_virtgpu_execbuffer, bo_handles) == 16);
static_assert(offsetof(drm_virtgpu_execbuffer, num_bo_handles) == 24);
static_assert(offsetof(drm_virtgpu_execbuffer, fence_fd) == 28);
static_assert(offsetof(drm_virtgpu_execbuffer, ring_idx) == 32);
static_assert(offsetof(drm_virtgpu_execbuffer, syncobj_stride) == 36);
static_assert(offsetof(drm_virtgpu_execbuffer, num_in_syncobjs) == 40);
static_assert(offsetof(drm_virtgpu_execbuffer, num_out_syncobjs) == 44);
static_assert(offsetof(drm_virtgpu_execbuffer, in_syncobjs) == 48);
static_assert(offsetof(drm_virtgpu_execbuffer, out_syncobjs) == 56);

// §3.7
struct drm_virtgpu_map {
    uint64_t offset;
    uint32_t handle;
    uint32_t pad;
};
static_assert(sizeof(drm_virtgpu_map) == 16);
static_assert(offsetof(drm_virtgpu_map, handle) == 8);
static_assert(offsetof(drm_virtgpu_map, pad) == 12);

inline constexpr uint32_t VIRTGPU_WAIT_NOWAIT = 1;
struct drm_virtgpu_3d_wait {
    uint32_t handle;
    uint32_t flags;
};
static_assert(sizeof(drm_virtgpu_3d_wait) == 8);

struct drm_virtgpu_resource_info {
    uint32_t bo_handle;
    uint32_t res_handle;
    uint32_t size;
    uint32_t blob_mem;
};
static_assert(sizeof(drm_virtgpu_resource_info) == 16);
static_assert(offsetof(drm_virtgpu_resource_info, res_handle) == 4);
static_assert(offsetof(drm_virtgpu_resource_info, size) == 8);
static_assert(offsetof(drm_virtgpu_resource_info, blob_mem) == 12);

// §3.1 ioctl numbers
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_MAP = drm_driver_iowr(0x01, sizeof(drm_virtgpu_map));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_EXECBUFFER = drm_driver_iowr(0x02, sizeof(drm_virtgpu_execbuffer));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_GETPARAM = drm_driver_iowr(0x03, sizeof(drm_virtgpu_getparam));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_RESOURCE_INFO =
    drm_driver_iowr(0x05, sizeof(drm_virtgpu_resource_info));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_WAIT = drm_driver_iowr(0x08, sizeof(drm_virtgpu_3d_wait));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_GET_CAPS = drm_driver_iowr(0x09, sizeof(drm_virtgpu_get_caps));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB =
    drm_driver_iowr(0x0a, sizeof(drm_virtgpu_resource_create_blob));
inline constexpr uint32_t DRM_IOCTL_VIRTGPU_CONTEXT_INIT =
    drm_driver_iowr(0x0b, sizeof(drm_virtgpu_context_init));

static_assert(DRM_IOCTL_VIRTGPU_MAP == 0xC0106441);
static_assert(DRM_IOCTL_VIRTGPU_EXECBUFFER == 0xC0406442);
static_assert(DRM_IOCTL_VIRTGPU_GETPARAM == 0xC0106443);
static_assert(DRM_IOCTL_VIRTGPU_RESOURCE_INFO == 0xC0106445);
static_assert(DRM_IOCTL_VIRTGPU_WAIT == 0xC0086448);
static_assert(DRM_IOCTL_VIRTGPU_GET_CAPS == 0xC0186449);
static_assert(DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB == 0xC030644A);
static_assert(DRM_IOCTL_VIRTGPU_CONTEXT_INIT == 0xC010644B);

} // namespace fdnc::wire
