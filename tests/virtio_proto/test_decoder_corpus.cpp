// Malformed-record corpus: each record gets its named DecodeError. Every stream is decoded from an
// exact-size heap buffer, so an ASan build catches any read past the end.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <set>
#include <string>

#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/ccmd_encoder.h"

using namespace fdnc;
using namespace fdnc::wire;

namespace {

constexpr uint32_t kArea = kShmemSize - kShmemRspMemOffset;

void set_u32(std::vector<uint8_t>& b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }

DecodeError decode_error(const std::vector<uint8_t>& stream, uint32_t area = kArea) {
    std::vector<uint8_t> exact(stream); // exact-size heap copy
    return decode_all(exact, area).error;
}

std::vector<uint8_t> hdr(uint32_t cmd, uint32_t len, uint32_t rsp_off = 0, size_t total = 0) {
    std::vector<uint8_t> b(total ? total : std::max<size_t>(len, 16), 0);
    set_u32(b, 0, cmd);
    set_u32(b, 4, len);
    set_u32(b, 12, rsp_off);
    return b;
}

} // namespace

TEST_CASE("a stream whose length is not a multiple of 4 is BufferUnaligned") {
    auto b = ccmd::nop().bytes;
    b.push_back(0);
    CHECK(decode_error(b) == DecodeError::BufferUnaligned);
}

TEST_CASE("fewer than 16 bytes after the last record are TrailingBytes") {
    auto b = ccmd::nop().bytes;
    b.resize(b.size() + 12, 0);
    auto d = decode_all(b, kArea);
    CHECK(d.error == DecodeError::TrailingBytes);
    CHECK(d.records.size() == 1);
    CHECK(d.error_offset == 16);
}

TEST_CASE("a len below the 16-byte header is LenTooShort") {
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 8, 0, 16)) == DecodeError::LenTooShort);
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 0, 0, 16)) == DecodeError::LenTooShort);
}

TEST_CASE("a len that is not a multiple of 4 is LenUnaligned") {
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 18, 0, 20)) == DecodeError::LenUnaligned);
}

TEST_CASE("a len past the end of the stream is LenPastEnd, even near 4 GiB") {
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 20, 0, 16)) == DecodeError::LenPastEnd);
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 0xfffffffc, 0, 16)) == DecodeError::LenPastEnd);
}

TEST_CASE("an rsp_off that is not a multiple of 4 is RspOffUnaligned") {
    CHECK(decode_error(hdr(MSM_CCMD_NOP, 16, 2)) == DecodeError::RspOffUnaligned);
}

TEST_CASE("a response that does not fit the response area is RspOffOutOfRange") {
    auto e = ccmd::gem_cpu_prep(1, MSM_PREP_READ); // 8-byte response
    set_u32(e.bytes, 12, kArea - 8);
    CHECK(decode_error(e.bytes) == DecodeError::None); // ends exactly at the area end
    set_u32(e.bytes, 12, kArea - 4);
    CHECK(decode_error(e.bytes) == DecodeError::RspOffOutOfRange);
    set_u32(e.bytes, 12, 0xfffffffc); // no wrap-around in rsp_off + size
    CHECK(decode_error(e.bytes) == DecodeError::RspOffOutOfRange);
    auto q = ccmd::submitqueue_query(1, 0, 0xfffffff0); // 12 + len must not wrap either
    CHECK(decode_error(q.bytes) == DecodeError::RspOffOutOfRange);
}

TEST_CASE("a command with a response before the shared page exists is RspOffOutOfRange") {
    CHECK(decode_error(ccmd::wait_fence(1, 1).bytes, 0) == DecodeError::RspOffOutOfRange);
    CHECK(decode_error(ccmd::nop().bytes, 0) == DecodeError::None); // H8: no response, still runs
}

TEST_CASE("cmd 0, 12 and beyond are UnknownCmd") {
    for (uint32_t cmd : {0u, 12u, 13u, 0xffffffffu}) {
        INFO("cmd " << cmd);
        CHECK(decode_error(hdr(cmd, 16)) == DecodeError::UnknownCmd);
    }
}

TEST_CASE("submit counts that need more bytes than len are PayloadSizeMismatch, without overflow") {
    drm_msm_gem_submit_bo bo{};
    auto e = ccmd::gem_submit(MSM_PIPE_3D0, 1, 1, {&bo, 1}, {});
    CHECK(decode_error(e.bytes) == DecodeError::None);
    set_u32(e.bytes, offsetof(msm_ccmd_gem_submit_req, nr_cmds), 1);
    CHECK(decode_error(e.bytes) == DecodeError::PayloadSizeMismatch);
    set_u32(e.bytes, offsetof(msm_ccmd_gem_submit_req, nr_cmds), 0);
    set_u32(e.bytes, offsetof(msm_ccmd_gem_submit_req, nr_bos), 0x10000000); // 16 * n wraps in 32 bits
    CHECK(decode_error(e.bytes) == DecodeError::PayloadSizeMismatch);
    set_u32(e.bytes, offsetof(msm_ccmd_gem_submit_req, nr_bos), 0xffffffff);
    set_u32(e.bytes, offsetof(msm_ccmd_gem_submit_req, nr_cmds), 0xffffffff);
    CHECK(decode_error(e.bytes) == DecodeError::PayloadSizeMismatch);
}

TEST_CASE("a short submit record without room for its counts is PayloadSizeMismatch") {
    CHECK(decode_error(hdr(MSM_CCMD_GEM_SUBMIT, 16)) == DecodeError::PayloadSizeMismatch);
}

TEST_CASE("name, upload and debuginfo lengths past len are PayloadSizeMismatch") {
    auto n = ccmd::gem_set_name(1, "abcd");
    set_u32(n.bytes, offsetof(msm_ccmd_gem_set_name_req, len), 5);
    CHECK(decode_error(n.bytes) == DecodeError::PayloadSizeMismatch);
    set_u32(n.bytes, offsetof(msm_ccmd_gem_set_name_req, len), 0xffffffff);
    CHECK(decode_error(n.bytes) == DecodeError::PayloadSizeMismatch);

    const uint8_t data[4] = {};
    auto u = ccmd::gem_upload(1, 0, data);
    set_u32(u.bytes, offsetof(msm_ccmd_gem_upload_req, len), 8);
    CHECK(decode_error(u.bytes) == DecodeError::PayloadSizeMismatch);

    auto d = ccmd::set_debuginfo("ab", "cd");
    set_u32(d.bytes, offsetof(msm_ccmd_set_debuginfo_req, cmdline_len), 0xfffffffe); // sum wraps in 32 bits
    CHECK(decode_error(d.bytes) == DecodeError::PayloadSizeMismatch);
}

TEST_CASE("IOCTL_SIMPLE outside the allow-list, of another type or over 128 bytes is IoctlNotAllowed") {
    const uint8_t arg[16] = {};
    CHECK(decode_error(ccmd::ioctl_simple(DRM_IOCTL_MSM_GEM_NEW, arg).bytes) == DecodeError::IoctlNotAllowed);
    CHECK(decode_error(ccmd::ioctl_simple(DRM_IOCTL_MSM_GEM_SUBMIT, arg).bytes) == DecodeError::IoctlNotAllowed);
    const uint32_t wrong_type = ioc(kIocRead | kIocWrite, 'e', kDrmCommandBase + DRM_MSM_GET_PARAM, 24);
    CHECK(decode_error(ccmd::ioctl_simple(wrong_type, arg).bytes) == DecodeError::IoctlNotAllowed);
    const uint32_t core = ioc(kIocRead | kIocWrite, 'd', DRM_MSM_GET_PARAM, 24); // below DRM_COMMAND_BASE
    CHECK(decode_error(ccmd::ioctl_simple(core, arg).bytes) == DecodeError::IoctlNotAllowed);
    const uint32_t big = drm_driver_iowr(DRM_MSM_GET_PARAM, 132);
    CHECK(decode_error(ccmd::ioctl_simple(big, arg).bytes) == DecodeError::IoctlNotAllowed);
    CHECK(decode_error(hdr(MSM_CCMD_IOCTL_SIMPLE, 16)) == DecodeError::IoctlNotAllowed); // cmd reads as 0
}

TEST_CASE("IOCTL_SIMPLE whose len is not exactly 20 plus the ioctl size is PayloadSizeMismatch") {
    auto e = ccmd::get_param(MSM_PARAM_GPU_ID);
    e.bytes.resize(e.bytes.size() + 4, 0);
    set_u32(e.bytes, 4, static_cast<uint32_t>(e.bytes.size()));
    CHECK(decode_error(e.bytes) == DecodeError::PayloadSizeMismatch);
    e.bytes.resize(e.bytes.size() - 8);
    set_u32(e.bytes, 4, static_cast<uint32_t>(e.bytes.size()));
    CHECK(decode_error(e.bytes) == DecodeError::PayloadSizeMismatch);
}

TEST_CASE("an upload with a non-zero pad is UploadPadNonZero") {
    auto u = ccmd::gem_upload(1, 0, {});
    set_u32(u.bytes, offsetof(msm_ccmd_gem_upload_req, pad), 1);
    CHECK(decode_error(u.bytes) == DecodeError::UploadPadNonZero);
}

TEST_CASE("records before a bad one are returned and nothing after it") {
    std::vector<uint8_t> s;
    for (auto b : {ccmd::nop().bytes, ccmd::get_param(1).bytes, hdr(99, 16), ccmd::nop().bytes})
        s.insert(s.end(), b.begin(), b.end());
    CcmdDecoder dec(s, kArea);
    Ccmd c;
    REQUIRE(dec.next(&c));
    REQUIRE(dec.next(&c));
    CHECK_FALSE(dec.next(&c));
    CHECK(dec.error() == DecodeError::UnknownCmd);
    CHECK(dec.error_offset() == 16 + 44);
    CHECK_FALSE(dec.next(&c)); // H6: stays stopped
}

TEST_CASE("fixed-size requests shorter than their struct are accepted and read as zero-extended") {
    auto b = hdr(MSM_CCMD_GEM_NEW, 16); // H5
    auto d = decode_all(b, kArea);
    REQUIRE(d.error == DecodeError::None);
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].copy<msm_ccmd_gem_new_req>().blob_id == 0);
    CHECK(d.records[0].tail().empty());
}

TEST_CASE("randomly mutated streams never yield a record outside the stream") {
    std::mt19937 rng(12345);
    std::vector<uint8_t> base;
    drm_msm_gem_submit_bo bo{};
    drm_msm_gem_submit_cmd cm{};
    for (auto e : {ccmd::nop(), ccmd::get_param(1), ccmd::gem_submit(0x10, 1, 1, {&bo, 1}, {&cm, 1}),
                   ccmd::gem_upload(1, 0, std::vector<uint8_t>(9, 1)), ccmd::set_debuginfo("a", "bc"),
                   ccmd::submitqueue_query(1, 0, 8), ccmd::gem_set_name(2, "nm")})
        base.insert(base.end(), e.bytes.begin(), e.bytes.end());
    std::set<DecodeError> seen;
    for (int iter = 0; iter < 20000; ++iter) {
        std::vector<uint8_t> s = base;
        const int flips = 1 + rng() % 4;
        for (int f = 0; f < flips; ++f) s[rng() % s.size()] = static_cast<uint8_t>(rng());
        if (rng() % 8 == 0) s.resize(rng() % s.size());
        s.shrink_to_fit();
        const auto d = decode_all(s, kArea);
        seen.insert(d.error);
        size_t end = 0;
        for (const Ccmd& c : d.records) {
            REQUIRE(c.offset == end);
            REQUIRE(c.bytes.data() == s.data() + c.offset);
            REQUIRE(c.offset + c.bytes.size() <= s.size());
            if (c.rsp_size) REQUIRE(uint64_t{c.rsp_off} + c.rsp_size <= kArea);
            end = c.offset + c.bytes.size();
        }
        if (d.error == DecodeError::None) REQUIRE(end == s.size());
    }
    CHECK(seen.size() >= 6); // the mutations really reach many different refusals
}

TEST_CASE("every decode error has its own name") {
    std::set<std::string> names;
    for (int e = 0; e <= static_cast<int>(DecodeError::UploadPadNonZero); ++e)
        names.insert(decode_error_name(static_cast<DecodeError>(e)));
    CHECK(names.size() == static_cast<size_t>(DecodeError::UploadPadNonZero) + 1);
    CHECK(std::string(decode_error_name(DecodeError::LenPastEnd)) == "LenPastEnd");
}
