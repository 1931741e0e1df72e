// Small helpers shared by the transport tests: a context with its shared page, raw ccmds.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/transport.h"
#include "virtio_proto/vdrm_wire.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::test {

inline constexpr uint64_t kShmemSize = 0x4000; // §5.3

inline wire::virgl_renderer_capset_drm read_caps(Transport& t, int* ret) {
    wire::virgl_renderer_capset_drm caps{};
    *ret = t.get_capset(wire::VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&caps), sizeof caps});
    return caps;
}

inline BlobCreateArgs shmem_args() {
    BlobCreateArgs a;
    a.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    a.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    a.size = kShmemSize;
    a.blob_id = 0;
    return a;
}

// A mappable HOST3D blob of `size` bytes for GEM object blob_id, created by the tunnelled GEM_NEW
// in `gem_new` (§3.5); the span must outlive the create_blob call.
inline BlobCreateArgs gem_blob_args(std::span<const uint8_t> gem_new, uint64_t size, uint64_t blob_id) {
    BlobCreateArgs a;
    a.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    a.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    a.size = size;
    a.blob_id = blob_id;
    a.cmd = gem_new;
    return a;
}

// A NOP with a chosen seqno: the host stores it in shmem.seqno once it ran (§5.3).
inline std::vector<uint8_t> nop_with_seqno(uint32_t seqno) {
    auto e = ccmd::nop();
    wire::vdrm_ccmd_req hdr;
    std::memcpy(&hdr, e.bytes.data(), sizeof hdr);
    hdr.seqno = seqno;
    std::memcpy(e.bytes.data(), &hdr, sizeof hdr);
    return e.bytes;
}

inline uint32_t shmem_seqno(const void* shmem) {
    const auto* s = static_cast<const wire::msm_shmem*>(shmem);
    return __atomic_load_n(&s->base.seqno, __ATOMIC_ACQUIRE);
}

} // namespace fdnc::test
