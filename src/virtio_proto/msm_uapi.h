// The subset of the msm kernel uapi (include/uapi/drm/msm_drm.h) fdnc speaks, as its own structs.
// Debian's libdrm headers predate MSM_PARAM_VA_START/VA_SIZE and MSM_INFO_SET_IOVA, so every
// layout here is fdnc's, checked against PROTOCOL.md §2 and §10 with static_asserts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ioctl_encoding.h"

namespace fdnc::wire {

// §2.2 pipes
inline constexpr uint32_t MSM_PIPE_NONE = 0x00;
inline constexpr uint32_t MSM_PIPE_2D0 = 0x01;
inline constexpr uint32_t MSM_PIPE_2D1 = 0x02;
inline constexpr uint32_t MSM_PIPE_3D0 = 0x10;
inline constexpr uint32_t MSM_PIPE_ID_MASK = 0xffff;

// §2.3 params
inline constexpr uint32_t MSM_PARAM_GPU_ID = 0x01;
inline constexpr uint32_t MSM_PARAM_GMEM_SIZE = 0x02;
inline constexpr uint32_t MSM_PARAM_CHIP_ID = 0x03;
inline constexpr uint32_t MSM_PARAM_MAX_FREQ = 0x04;
inline constexpr uint32_t MSM_PARAM_TIMESTAMP = 0x05;
inline constexpr uint32_t MSM_PARAM_GMEM_BASE = 0x06;
inline constexpr uint32_t MSM_PARAM_PRIORITIES = 0x07;
inline constexpr uint32_t MSM_PARAM_PP_PGTABLE = 0x08;
inline constexpr uint32_t MSM_PARAM_FAULTS = 0x09;
inline constexpr uint32_t MSM_PARAM_SUSPENDS = 0x0a;
inline constexpr uint32_t MSM_PARAM_SYSPROF = 0x0b;
inline constexpr uint32_t MSM_PARAM_COMM = 0x0c;
inline constexpr uint32_t MSM_PARAM_CMDLINE = 0x0d;
inline constexpr uint32_t MSM_PARAM_VA_START = 0x0e;
inline constexpr uint32_t MSM_PARAM_VA_SIZE = 0x0f;
inline constexpr uint32_t MSM_PARAM_HIGHEST_BANK_BIT = 0x10;
inline constexpr uint32_t MSM_PARAM_RAYTRACING = 0x11;
inline constexpr uint32_t MSM_PARAM_UBWC_SWIZZLE = 0x12;
inline constexpr uint32_t MSM_PARAM_MACROTILE_MODE = 0x13;
inline constexpr uint32_t MSM_PARAM_UCHE_TRAP_BASE = 0x14;

// §2.4
struct drm_msm_param {
    uint32_t pipe;
    uint32_t param;
    uint64_t value;
    uint32_t len;
    uint32_t pad;
};
static_assert(sizeof(drm_msm_param) == 24);
static_assert(offsetof(drm_msm_param, pipe) == 0);
static_assert(offsetof(drm_msm_param, param) == 4);
static_assert(offsetof(drm_msm_param, value) == 8);
static_assert(offsetof(drm_msm_param, len) == 16);
static_assert(offsetof(drm_msm_param, pad) == 20);

// §2.5
inline constexpr uint32_t MSM_BO_SCANOUT = 0x00000001;
inline constexpr uint32_t MSM_BO_GPU_READONLY = 0x00000002;
inline constexpr uint32_t MSM_BO_CACHE_MASK = 0x000f0000;
inline constexpr uint32_t MSM_BO_CACHED = 0x00010000;
inline constexpr uint32_t MSM_BO_WC = 0x00020000;
inline constexpr uint32_t MSM_BO_UNCACHED = 0x00040000;
inline constexpr uint32_t MSM_BO_CACHED_COHERENT = 0x00080000;
inline constexpr uint32_t MSM_BO_FLAGS = MSM_BO_SCANOUT | MSM_BO_GPU_READONLY | MSM_BO_CACHE_MASK;

struct drm_msm_gem_new {
    uint64_t size;
    uint32_t flags;
    uint32_t handle;
};
static_assert(sizeof(drm_msm_gem_new) == 16);
static_assert(offsetof(drm_msm_gem_new, size) == 0);
static_assert(offsetof(drm_msm_gem_new, flags) == 8);
static_assert(offsetof(drm_msm_gem_new, handle) == 12);

// §2.6
inline constexpr uint32_t MSM_INFO_GET_OFFSET = 0x00;
inline constexpr uint32_t MSM_INFO_GET_IOVA = 0x01;
inline constexpr uint32_t MSM_INFO_SET_NAME = 0x02;
inline constexpr uint32_t MSM_INFO_GET_NAME = 0x03;
inline constexpr uint32_t MSM_INFO_SET_IOVA = 0x04;
inline constexpr uint32_t MSM_INFO_GET_FLAGS = 0x05;
inline constexpr uint32_t MSM_INFO_SET_METADATA = 0x06;
inline constexpr uint32_t MSM_INFO_GET_METADATA = 0x07;
inline constexpr uint32_t kMsmBoNameMax = 32; // name buffer incl. NUL

struct drm_msm_gem_info {
    uint32_t handle;
    uint32_t info;
    uint64_t value;
    uint32_t len;
    uint32_t pad;
};
static_assert(sizeof(drm_msm_gem_info) == 24);
static_assert(offsetof(drm_msm_gem_info, handle) == 0);
static_assert(offsetof(drm_msm_gem_info, info) == 4);
static_assert(offsetof(drm_msm_gem_info, value) == 8);
static_assert(offsetof(drm_msm_gem_info, len) == 16);
static_assert(offsetof(drm_msm_gem_info, pad) == 20);

// §2.7
struct drm_msm_timespec {
    int64_t tv_sec;
    int64_t tv_nsec;
};
static_assert(sizeof(drm_msm_timespec) == 16);
static_assert(offsetof(drm_msm_timespec, tv_nsec) == 8);

inline constexpr uint32_t MSM_PREP_READ = 0x01;
inline constexpr uint32_t MSM_PREP_WRITE = 0x02;
inline constexpr uint32_t MSM_PREP_NOSYNC = 0x04;
inline constexpr uint32_t MSM_PREP_BOOST = 0x08;
inline constexpr uint32_t MSM_PREP_FLAGS = MSM_PREP_READ | MSM_PREP_WRITE | MSM_PREP_NOSYNC | MSM_PREP_BOOST;

struct drm_msm_gem_cpu_prep {
    uint32_t handle;
    uint32_t op;
    drm_msm_timespec timeout;
};
static_assert(sizeof(drm_msm_gem_cpu_prep) == 24);
static_assert(offsetof(drm_msm_gem_cpu_prep, op) == 4);
static_assert(offsetof(drm_msm_gem_cpu_prep, timeout) == 8);

struct drm_msm_gem_cpu_fini {
    uint32_t handle;
};
static_assert(sizeof(drm_msm_gem_cpu_fini) == 4);

// §2.8
struct drm_msm_gem_submit_reloc {
    uint32_t submit_offset;
    uint32_t or_; // "or" in C
    int32_t shift;
    uint32_t reloc_idx;
    uint64_t reloc_offset;
};
static_assert(sizeof(drm_msm_gem_submit_reloc) == 24);
static_assert(offsetof(drm_msm_gem_submit_reloc, or_) == 4);
static_assert(offsetof(drm_msm_gem_submit_reloc, shift) == 8);
static_assert(offsetof(drm_msm_gem_submit_reloc, reloc_idx) == 12);
static_assert(offsetof(drm_msm_gem_submit_reloc, reloc_offset) == 16);

inline constexpr uint32_t MSM_SUBMIT_CMD_BUF = 0x0001;
inline constexpr uint32_t MSM_SUBMIT_CMD_IB_TARGET_BUF = 0x0002;
inline constexpr uint32_t MSM_SUBMIT_CMD_CTX_RESTORE_BUF = 0x0003;

struct drm_msm_gem_submit_cmd {
    uint32_t type;
    uint32_t submit_idx;
    uint32_t submit_offset;
    uint32_t size;
    uint32_t pad;
    uint32_t nr_relocs;
    uint64_t relocs;
};
static_assert(sizeof(drm_msm_gem_submit_cmd) == 32);
static_assert(offsetof(drm_msm_gem_submit_cmd, type) == 0);
static_assert(offsetof(drm_msm_gem_submit_cmd, submit_idx) == 4);
static_assert(offsetof(drm_msm_gem_submit_cmd, submit_offset) == 8);
static_assert(offsetof(drm_msm_gem_submit_cmd, size) == 12);
static_assert(offsetof(drm_msm_gem_submit_cmd, pad) == 16);
static_assert(offsetof(drm_msm_gem_submit_cmd, nr_relocs) == 20);
static_assert(offsetof(drm_msm_gem_submit_cmd, relocs) == 24);

inline constexpr uint32_t MSM_SUBMIT_BO_READ = 0x0001;
inline constexpr uint32_t MSM_SUBMIT_BO_WRITE = 0x0002;
inline constexpr uint32_t MSM_SUBMIT_BO_DUMP = 0x0004;
inline constexpr uint32_t MSM_SUBMIT_BO_NO_IMPLICIT = 0x0008;
inline constexpr uint32_t MSM_SUBMIT_BO_FLAGS =
    MSM_SUBMIT_BO_READ | MSM_SUBMIT_BO_WRITE | MSM_SUBMIT_BO_DUMP | MSM_SUBMIT_BO_NO_IMPLICIT;

struct drm_msm_gem_submit_bo {
    uint32_t flags;
    uint32_t handle;
    uint64_t presumed;
};
static_assert(sizeof(drm_msm_gem_submit_bo) == 16);
static_assert(offsetof(drm_msm_gem_submit_bo, flags) == 0);
static_assert(offsetof(drm_msm_gem_submit_bo, handle) == 4);
static_assert(offsetof(drm_msm_gem_submit_bo, presumed) == 8);

struct drm_msm_gem_submit_syncobj {
    uint32_t handle;
    uint32_t flags;
    uint64_t point;
};
static_assert(sizeof(drm_msm_gem_submit_syncobj) == 16);
static_assert(offsetof(drm_msm_gem_submit_syncobj, point) == 8);

inline constexpr uint32_t MSM_SUBMIT_NO_IMPLICIT = 0x80000000;
inline constexpr uint32_t MSM_SUBMIT_FENCE_FD_IN = 0x40000000;
inline constexpr uint32_t MSM_SUBMIT_FENCE_FD_OUT = 0x20000000;
inline constexpr uint32_t MSM_SUBMIT_SUDO = 0x10000000;
inline constexpr uint32_t MSM_SUBMIT_SYNCOBJ_IN = 0x08000000;
inline constexpr uint32_t MSM_SUBMIT_SYNCOBJ_OUT = 0x04000000;
inline constexpr uint32_t MSM_SUBMIT_FENCE_SN_IN = 0x02000000;
inline constexpr uint32_t MSM_SUBMIT_FLAGS = MSM_SUBMIT_NO_IMPLICIT | MSM_SUBMIT_FENCE_FD_IN |
                                             MSM_SUBMIT_FENCE_FD_OUT | MSM_SUBMIT_SUDO |
                                             MSM_SUBMIT_SYNCOBJ_IN | MSM_SUBMIT_SYNCOBJ_OUT |
                                             MSM_SUBMIT_FENCE_SN_IN;

struct drm_msm_gem_submit {
    uint32_t flags;
    uint32_t fence;
    uint32_t nr_bos;
    uint32_t nr_cmds;
    uint64_t bos;
    uint64_t cmds;
    int32_t fence_fd;
    uint32_t queueid;
    uint64_t in_syncobjs;
    uint64_t out_syncobjs;
    uint32_t nr_in_syncobjs;
    uint32_t nr_out_syncobjs;
    uint32_t syncobj_stride;
    uint32_t pad;
};
static_assert(sizeof(drm_msm_gem_submit) == 72);
static_assert(offsetof(drm_msm_gem_submit, fence) == 4);
static_assert(offsetof(drm_msm_gem_submit, nr_bos) == 8);
static_assert(offsetof(drm_msm_gem_submit, nr_cmds) == 12);
static_assert(offsetof(drm_msm_gem_submit, bos) == 16);
static_assert(offsetof(drm_msm_gem_submit, cmds) == 24);
static_assert(offsetof(drm_msm_gem_submit, fence_fd) == 32);
static_assert(offsetof(drm_msm_gem_submit, queueid) == 36);
static_assert(offsetof(drm_msm_gem_submit, in_syncobjs) == 40);
static_assert(offsetof(drm_msm_gem_submit, out_syncobjs) == 48);
static_assert(offsetof(drm_msm_gem_submit, nr_in_syncobjs) == 56);
static_assert(offsetof(drm_msm_gem_submit, nr_out_syncobjs) == 60);
static_assert(offsetof(drm_msm_gem_submit, syncobj_stride) == 64);
static_assert(offsetof(drm_msm_gem_submit, pad) == 68);

// §2.9
inline constexpr uint32_t MSM_WAIT_FENCE_BOOST = 0x1;
struct drm_msm_wait_fence {
    uint32_t fence;
    uint32_t flags;
    drm_msm_timespec timeout;
    uint32_t queueid;
    uint32_t pad_; // x86_64/aarch64/armv7 tail padding made explicit (absent on i386)
};
static_assert(sizeof(drm_msm_wait_fence) == 32);
static_assert(offsetof(drm_msm_wait_fence, flags) == 4);
static_assert(offsetof(drm_msm_wait_fence, timeout) == 8);
static_assert(offsetof(drm_msm_wait_fence, queueid) == 24);

// §2.10
inline constexpr uint32_t MSM_MADV_WILLNEED = 0;
inline constexpr uint32_t MSM_MADV_DONTNEED = 1;
struct drm_msm_gem_madvise {
    uint32_t handle;
    uint32_t madv;
    uint32_t retained;
};
static_assert(sizeof(drm_msm_gem_madvise) == 12);
static_assert(offsetof(drm_msm_gem_madvise, retained) == 8);

inline constexpr uint32_t MSM_SUBMITQUEUE_ALLOW_PREEMPT = 0x1;
struct drm_msm_submitqueue {
    uint32_t flags;
    uint32_t prio;
    uint32_t id;
};
static_assert(sizeof(drm_msm_submitqueue) == 12);
static_assert(offsetof(drm_msm_submitqueue, prio) == 4);
static_assert(offsetof(drm_msm_submitqueue, id) == 8);

inline constexpr uint32_t MSM_SUBMITQUEUE_PARAM_FAULTS = 0;
struct drm_msm_submitqueue_query {
    uint64_t data;
    uint32_t id;
    uint32_t param;
    uint32_t len;
    uint32_t pad;
};
static_assert(sizeof(drm_msm_submitqueue_query) == 24);
static_assert(offsetof(drm_msm_submitqueue_query, id) == 8);
static_assert(offsetof(drm_msm_submitqueue_query, param) == 12);
static_assert(offsetof(drm_msm_submitqueue_query, len) == 16);
static_assert(offsetof(drm_msm_submitqueue_query, pad) == 20);

// §2.1 ioctl numbers
inline constexpr uint32_t DRM_MSM_GET_PARAM = 0x00;
inline constexpr uint32_t DRM_MSM_SET_PARAM = 0x01;
inline constexpr uint32_t DRM_MSM_GEM_NEW = 0x02;
inline constexpr uint32_t DRM_MSM_GEM_INFO = 0x03;
inline constexpr uint32_t DRM_MSM_GEM_CPU_PREP = 0x04;
inline constexpr uint32_t DRM_MSM_GEM_CPU_FINI = 0x05;
inline constexpr uint32_t DRM_MSM_GEM_SUBMIT = 0x06;
inline constexpr uint32_t DRM_MSM_WAIT_FENCE = 0x07;
inline constexpr uint32_t DRM_MSM_GEM_MADVISE = 0x08;
inline constexpr uint32_t DRM_MSM_SUBMITQUEUE_NEW = 0x0A;
inline constexpr uint32_t DRM_MSM_SUBMITQUEUE_CLOSE = 0x0B;
inline constexpr uint32_t DRM_MSM_SUBMITQUEUE_QUERY = 0x0C;

inline constexpr uint32_t DRM_IOCTL_MSM_GET_PARAM = drm_driver_iowr(DRM_MSM_GET_PARAM, sizeof(drm_msm_param));
inline constexpr uint32_t DRM_IOCTL_MSM_SET_PARAM = drm_driver_iow(DRM_MSM_SET_PARAM, sizeof(drm_msm_param));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_NEW = drm_driver_iowr(DRM_MSM_GEM_NEW, sizeof(drm_msm_gem_new));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_INFO = drm_driver_iowr(DRM_MSM_GEM_INFO, sizeof(drm_msm_gem_info));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_CPU_PREP =
    drm_driver_iow(DRM_MSM_GEM_CPU_PREP, sizeof(drm_msm_gem_cpu_prep));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_CPU_FINI =
    drm_driver_iow(DRM_MSM_GEM_CPU_FINI, sizeof(drm_msm_gem_cpu_fini));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_SUBMIT =
    drm_driver_iowr(DRM_MSM_GEM_SUBMIT, sizeof(drm_msm_gem_submit));
inline constexpr uint32_t DRM_IOCTL_MSM_WAIT_FENCE =
    drm_driver_iow(DRM_MSM_WAIT_FENCE, sizeof(drm_msm_wait_fence));
inline constexpr uint32_t DRM_IOCTL_MSM_GEM_MADVISE =
    drm_driver_iowr(DRM_MSM_GEM_MADVISE, sizeof(drm_msm_gem_madvise));
inline constexpr uint32_t DRM_IOCTL_MSM_SUBMITQUEUE_NEW =
    drm_driver_iowr(DRM_MSM_SUBMITQUEUE_NEW, sizeof(drm_msm_submitqueue));
inline constexpr uint32_t DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE = drm_driver_iow(DRM_MSM_SUBMITQUEUE_CLOSE, 4);
inline constexpr uint32_t DRM_IOCTL_MSM_SUBMITQUEUE_QUERY =
    drm_driver_iow(DRM_MSM_SUBMITQUEUE_QUERY, sizeof(drm_msm_submitqueue_query));

static_assert(DRM_IOCTL_MSM_GET_PARAM == 0xC0186440);
static_assert(DRM_IOCTL_MSM_SET_PARAM == 0x40186441);
static_assert(DRM_IOCTL_MSM_GEM_NEW == 0xC0106442);
static_assert(DRM_IOCTL_MSM_GEM_INFO == 0xC0186443);
static_assert(DRM_IOCTL_MSM_GEM_CPU_PREP == 0x40186444);
static_assert(DRM_IOCTL_MSM_GEM_CPU_FINI == 0x40046445);
static_assert(DRM_IOCTL_MSM_GEM_SUBMIT == 0xC0486446);
static_assert(DRM_IOCTL_MSM_WAIT_FENCE == 0x40206447);
static_assert(DRM_IOCTL_MSM_GEM_MADVISE == 0xC00C6448);
static_assert(DRM_IOCTL_MSM_SUBMITQUEUE_NEW == 0xC00C644A);
static_assert(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE == 0x4004644B);
static_assert(DRM_IOCTL_MSM_SUBMITQUEUE_QUERY == 0x4018644C);

// §1.3 default per-process VA range.
inline constexpr uint64_t kAdrenoVmStart = 0x1'0000'0000ull;
inline constexpr uint64_t kDefaultVaSize = 0x1'0000'0000ull; // SZ_4G

} // namespace fdnc::wire
