// Runtime spot checks of the wire layouts, on top of the headers' static_asserts: they look at
// the bytes an encoded request really has, so a wrong field order fails here too.
#include <catch2/catch.hpp>

#include <cstring>

#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/msm_ccmd.h"
#include "virtio_proto/vdrm_wire.h"

using namespace fdnc;
using namespace fdnc::wire;

namespace {
uint32_t u32_at(const std::vector<uint8_t>& b, size_t off) {
    uint32_t v;
    std::memcpy(&v, b.data() + off, 4);
    return v;
}
uint64_t u64_at(const std::vector<uint8_t>& b, size_t off) {
    uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;
}
} // namespace

TEST_CASE("the request header is cmd, len, seqno, rsp_off in little-endian order") {
    vdrm_ccmd_req h{0x01020304, 0x10, 0xaabbccdd, 0x40};
    uint8_t b[16];
    std::memcpy(b, &h, sizeof b);
    CHECK(b[0] == 0x04);
    CHECK(b[3] == 0x01);
    CHECK(b[4] == 0x10);
    CHECK(b[8] == 0xdd);
    CHECK(b[11] == 0xaa);
    CHECK(b[12] == 0x40);
}

TEST_CASE("the fixed request sizes match the PROTOCOL.md 5.4 table") {
    const uint32_t expected[MSM_CCMD_LAST] = {0, 16, 20, 40, 32, 24, 24, 36, 32, 28, 24, 24};
    for (uint32_t i = 0; i < MSM_CCMD_LAST; ++i) {
        INFO("cmd " << i << " " << msm_ccmd_name(i));
        CHECK(kCcmdFixedReqSize[i] == expected[i]);
    }
}

TEST_CASE("gem_new puts iova at 16, size at 24, flags at 32 and blob_id at 36") {
    auto e = ccmd::gem_new(0x1'2345'6000ull, 0x3000, MSM_BO_WC, 7);
    REQUIRE(e.bytes.size() == 40);
    CHECK(u32_at(e.bytes, 0) == MSM_CCMD_GEM_NEW);
    CHECK(u32_at(e.bytes, 4) == 40);
    CHECK(u64_at(e.bytes, 16) == 0x1'2345'6000ull);
    CHECK(u64_at(e.bytes, 24) == 0x3000);
    CHECK(u32_at(e.bytes, 32) == MSM_BO_WC);
    CHECK(u32_at(e.bytes, 36) == 7);
}

TEST_CASE("gem_set_iova puts iova at 16 and res_id at 24 with a zero pad at 28") {
    auto e = ccmd::gem_set_iova(9, 0xdead'b000ull);
    REQUIRE(e.bytes.size() == 32);
    CHECK(u64_at(e.bytes, 16) == 0xdead'b000ull);
    CHECK(u32_at(e.bytes, 24) == 9);
    CHECK(u32_at(e.bytes, 28) == 0);
}

TEST_CASE("the shared page fields exist only when rsp_mem_offset is past them") {
    CHECK(shmem_has_field(kShmemRspMemOffset, offsetof(msm_shmem, async_error)));
    CHECK(shmem_has_field(kShmemRspMemOffset, offsetof(msm_shmem, global_faults)));
    CHECK_FALSE(shmem_has_field(8, offsetof(msm_shmem, async_error)));
    CHECK_FALSE(shmem_has_field(12, offsetof(msm_shmem, global_faults)));
    CHECK(offsetof(msm_shmem, async_error) == 8);
}

TEST_CASE("the ioctls allowed through IOCTL_SIMPLE decode to driver nr, type d and their struct size") {
    CHECK(ioc_nr(DRM_IOCTL_MSM_GET_PARAM) - kDrmCommandBase == DRM_MSM_GET_PARAM);
    CHECK(ioc_size(DRM_IOCTL_MSM_GET_PARAM) == sizeof(drm_msm_param));
    CHECK(ioc_dir(DRM_IOCTL_MSM_GET_PARAM) == (kIocRead | kIocWrite));
    CHECK(ioc_type(DRM_IOCTL_MSM_SUBMITQUEUE_NEW) == 'd');
    CHECK(ioc_size(DRM_IOCTL_MSM_SUBMITQUEUE_NEW) == 12);
    CHECK(ioc_dir(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE) == kIocWrite);
    CHECK(ioc_size(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE) == 4);
}

TEST_CASE("the capset keeps every Mesa 24.2 field inside its first 80 bytes") {
    CHECK(offsetof(virgl_renderer_capset_drm, u.msm.max_freq) + 4 <= kMesa242CapsetSize);
    CHECK(offsetof(virgl_renderer_capset_drm, u.msm.va_size) == 40);
    CHECK(offsetof(virgl_renderer_capset_drm, u.msm.highest_bank_bit) == 76);
    CHECK(sizeof(virgl_renderer_capset_drm) == 160);
}
