// fdnc-host-only wire extension: the OLD path's "ask the host for the buffer's iova", kept only so
// fdnc-replay and the benchmarks can measure what the design removes (--iova=host). It is not part
// of virglrenderer's protocol: a real host refuses the command id (H4 kills the stream), and
// fdnc's own host accepts it only when built with extensions enabled (host_sim does by default).
// Semantics: the kernel's GEM_INFO(GET_IOVA) on the object: it picks an iova if none is set (§1.2).
//
// This header is the layout only (what a host decodes); fdnc_ext.h adds the guest's encoder.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vdrm_wire.h"

namespace fdnc::wire {

inline constexpr uint32_t FDNC_CCMD_GEM_GET_IOVA = 0x100;

// How a guest knows, before sending anything, that the host serves FDNC_CCMD_GEM_GET_IOVA: the
// DRM capset's `pad` word holds this value ("FDNC"). virglrenderer never sets that word (its
// capset is a zero-initialized static, drm_renderer.c), and Mesa ignores it, so a real host reads
// as "no extensions" and the marker changes nothing for other guests. Without it, asking would
// cost the context: vtest drops the connection, virtio-gpu never answers (PROTOCOL.md §13.1).
inline constexpr uint32_t FDNC_CAPSET_EXTENSIONS_MARKER = 0x434e4446;

struct fdnc_ccmd_gem_get_iova_req {
    vdrm_ccmd_req hdr;
    uint32_t res_id;
    uint32_t pad;
};
static_assert(sizeof(fdnc_ccmd_gem_get_iova_req) == 24);
static_assert(offsetof(fdnc_ccmd_gem_get_iova_req, res_id) == 16);

struct fdnc_ccmd_gem_get_iova_rsp {
    vdrm_ccmd_rsp hdr;
    int32_t ret;
    uint64_t iova;
};
static_assert(sizeof(fdnc_ccmd_gem_get_iova_rsp) == 16);
static_assert(offsetof(fdnc_ccmd_gem_get_iova_rsp, ret) == 4);
static_assert(offsetof(fdnc_ccmd_gem_get_iova_rsp, iova) == 8);

} // namespace fdnc::wire
