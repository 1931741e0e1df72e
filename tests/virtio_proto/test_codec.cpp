// encode -> decode round trips: every builder yields one record the decoder accepts, with the
// fields, lengths, padding and response size PROTOCOL.md 5.4 gives.
#include <catch2/catch.hpp>

#include <cstring>

#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/ccmd_encoder.h"

using namespace fdnc;
using namespace fdnc::wire;

namespace {

constexpr uint32_t kArea = kShmemSize - kShmemRspMemOffset;

// Decodes exactly one record from an exact-size copy (so ASan sees any overread).
Ccmd decode_one(const ccmd::Encoded& e, std::vector<uint8_t>& storage) {
    storage = e.bytes;
    CcmdDecoder dec(storage, kArea);
    Ccmd c;
    REQUIRE(dec.next(&c));
    CHECK(dec.error() == DecodeError::None);
    Ccmd extra;
    CHECK_FALSE(dec.next(&extra));
    CHECK(dec.error() == DecodeError::None);
    CHECK(c.bytes.size() == e.bytes.size());
    CHECK(c.rsp_size == e.rsp_size);
    return c;
}

} // namespace

TEST_CASE("nop encodes to a bare 16-byte header with no response") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::nop(), s);
    CHECK(c.cmd == MSM_CCMD_NOP);
    CHECK(c.bytes.size() == 16);
    CHECK(c.rsp_size == 0);
}

TEST_CASE("get_param round-trips as a 44-byte IOCTL_SIMPLE with a 32-byte response") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::get_param(MSM_PARAM_VA_SIZE), s);
    CHECK(c.cmd == MSM_CCMD_IOCTL_SIMPLE);
    CHECK(c.bytes.size() == 44);
    CHECK(c.rsp_size == 32);
    CHECK(c.copy<msm_ccmd_ioctl_simple_req>().cmd == DRM_IOCTL_MSM_GET_PARAM);
    drm_msm_param p;
    REQUIRE(c.tail().size() == sizeof p);
    std::memcpy(&p, c.tail().data(), sizeof p);
    CHECK(p.pipe == MSM_PIPE_3D0);
    CHECK(p.param == MSM_PARAM_VA_SIZE);
    CHECK(p.len == 0);
}

TEST_CASE("submitqueue_new round-trips as a 32-byte IOCTL_SIMPLE with a 20-byte response") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::submitqueue_new(MSM_SUBMITQUEUE_ALLOW_PREEMPT, 2), s);
    CHECK(c.bytes.size() == 32);
    CHECK(c.rsp_size == 20);
    drm_msm_submitqueue q;
    std::memcpy(&q, c.tail().data(), sizeof q);
    CHECK(q.flags == MSM_SUBMITQUEUE_ALLOW_PREEMPT);
    CHECK(q.prio == 2);
}

TEST_CASE("submitqueue_close round-trips as a 24-byte IOCTL_SIMPLE whose response has no payload") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::submitqueue_close(5), s);
    CHECK(c.bytes.size() == 24);
    CHECK(c.rsp_size == 8); // IOW: no payload back
    uint32_t id;
    std::memcpy(&id, c.tail().data(), 4);
    CHECK(id == 5);
}

TEST_CASE("gem_new round-trips its iova, size, flags and blob_id") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_new(0x1'0000'4000ull, 0x8000, MSM_BO_CACHED_COHERENT, 42), s);
    auto r = c.copy<msm_ccmd_gem_new_req>();
    CHECK(r.iova == 0x1'0000'4000ull);
    CHECK(r.size == 0x8000);
    CHECK(r.flags == MSM_BO_CACHED_COHERENT);
    CHECK(r.blob_id == 42);
    CHECK(c.rsp_size == 0);
}

TEST_CASE("gem_set_iova round-trips res_id and iova, zero meaning release") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_set_iova(17, 0), s);
    auto r = c.copy<msm_ccmd_gem_set_iova_req>();
    CHECK(r.res_id == 17);
    CHECK(r.iova == 0);
}

TEST_CASE("gem_cpu_prep round-trips res_id and op with an 8-byte response") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_cpu_prep(3, MSM_PREP_WRITE), s);
    auto r = c.copy<msm_ccmd_gem_cpu_prep_req>();
    CHECK(r.res_id == 3);
    CHECK(r.op == MSM_PREP_WRITE);
    CHECK(c.rsp_size == 8);
}

TEST_CASE("gem_set_name carries the unpadded length and a zero-padded name") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_set_name(8, "hello"), s);
    auto r = c.copy<msm_ccmd_gem_set_name_req>();
    CHECK(r.res_id == 8);
    CHECK(r.len == 5);
    CHECK(c.bytes.size() == 24 + 8);
    CHECK(std::memcmp(c.tail().data(), "hello\0\0\0", 8) == 0);
}

TEST_CASE("gem_submit round-trips its bo and cmd tables in order") {
    drm_msm_gem_submit_bo bos[2] = {{MSM_SUBMIT_BO_READ, 11, 0}, {MSM_SUBMIT_BO_WRITE, 12, 0}};
    drm_msm_gem_submit_cmd cmds[1] = {{MSM_SUBMIT_CMD_BUF, 1, 0x40, 0x100, 0, 0, 0}};
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_submit(MSM_PIPE_3D0, 1, 77, bos, cmds), s);
    auto r = c.copy<msm_ccmd_gem_submit_req>();
    CHECK(r.flags == MSM_PIPE_3D0);
    CHECK(r.queue_id == 1);
    CHECK(r.fence == 77);
    CHECK(r.nr_bos == 2);
    CHECK(r.nr_cmds == 1);
    CHECK(c.bytes.size() == 36 + 32 + 32);
    drm_msm_gem_submit_bo b1;
    std::memcpy(&b1, c.tail().data() + 16, sizeof b1);
    CHECK(b1.handle == 12);
    drm_msm_gem_submit_cmd c0;
    std::memcpy(&c0, c.tail().data() + 32, sizeof c0);
    CHECK(c0.submit_idx == 1);
    CHECK(c0.submit_offset == 0x40);
    CHECK(c0.size == 0x100);
}

TEST_CASE("gem_upload carries a zero pad, the offset, the unpadded length and the data") {
    const uint8_t data[7] = {1, 2, 3, 4, 5, 6, 7};
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::gem_upload(4, 0x100, data), s);
    auto r = c.copy<msm_ccmd_gem_upload_req>();
    CHECK(r.pad == 0);
    CHECK(r.off == 0x100);
    CHECK(r.len == 7);
    CHECK(c.bytes.size() == 32 + 8);
    CHECK(c.tail()[6] == 7);
    CHECK(c.tail()[7] == 0);
}

TEST_CASE("submitqueue_query's response size is 12 plus the requested length") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::submitqueue_query(2, MSM_SUBMITQUEUE_PARAM_FAULTS, 4), s);
    CHECK(c.rsp_size == 16);
    CHECK(c.copy<msm_ccmd_submitqueue_query_req>().len == 4);
}

TEST_CASE("wait_fence round-trips queue and fence with an 8-byte response") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::wait_fence(3, 99), s);
    auto r = c.copy<msm_ccmd_wait_fence_req>();
    CHECK(r.queue_id == 3);
    CHECK(r.fence == 99);
    CHECK(c.rsp_size == 8);
}

TEST_CASE("set_debuginfo stores comm then cmdline and pads the whole payload to 4") {
    std::vector<uint8_t> s;
    auto c = decode_one(ccmd::set_debuginfo(std::string_view("app\0", 4), std::string_view("app -x\0", 7)), s);
    auto r = c.copy<msm_ccmd_set_debuginfo_req>();
    CHECK(r.comm_len == 4);
    CHECK(r.cmdline_len == 7);
    CHECK(c.bytes.size() == 24 + 12);
    CHECK(std::memcmp(c.tail().data(), "app\0app -x\0\0", 12) == 0);
}

TEST_CASE("a stream of every ccmd decodes back in order at the right offsets") {
    std::vector<ccmd::Encoded> all = {
        ccmd::nop(), ccmd::get_param(MSM_PARAM_GPU_ID), ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 2),
        ccmd::gem_set_iova(1, 0x1'0000'0000ull), ccmd::gem_cpu_prep(1, MSM_PREP_READ), ccmd::gem_set_name(1, "x"),
        ccmd::gem_submit(MSM_PIPE_3D0, 1, 1, {}, {}), ccmd::gem_upload(1, 0, {}),
        ccmd::submitqueue_query(1, 0, 4), ccmd::wait_fence(1, 1), ccmd::set_debuginfo("a", "b")};
    std::vector<uint8_t> stream;
    std::vector<size_t> offsets;
    for (auto& e : all) {
        offsets.push_back(stream.size());
        stream.insert(stream.end(), e.bytes.begin(), e.bytes.end());
    }
    auto d = decode_all(stream, kArea);
    CHECK(d.error == DecodeError::None);
    REQUIRE(d.records.size() == all.size());
    for (size_t i = 0; i < all.size(); ++i) {
        CHECK(d.records[i].cmd == all[i].hdr().cmd);
        CHECK(d.records[i].offset == offsets[i]);
    }
    CHECK(d.records[1].cmd == MSM_CCMD_IOCTL_SIMPLE);
    CHECK(d.records.back().cmd == MSM_CCMD_SET_DEBUGINFO);
}

TEST_CASE("response parsers refuse a slot shorter than the response they read") {
    std::vector<uint8_t> rsp(ccmd::kGetParamRspSize, 0);
    const int32_t ret = -1;
    const uint64_t value = 0x1234;
    std::memcpy(rsp.data() + 4, &ret, 4);
    std::memcpy(rsp.data() + 8 + offsetof(drm_msm_param, value), &value, 8);
    int32_t r = 0;
    uint64_t v = 0;
    REQUIRE(ccmd::parse_get_param(rsp, &r, &v));
    CHECK(r == -1);
    CHECK(v == 0x1234);
    CHECK_FALSE(ccmd::parse_get_param(std::span<const uint8_t>(rsp).first(24), &r, &v));
    CHECK_FALSE(ccmd::parse_ret(std::span<const uint8_t>(rsp).first(4), &r));
}
