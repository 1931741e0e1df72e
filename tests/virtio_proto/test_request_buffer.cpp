// RequestBuffer: when it flushes (Q2-Q6), how it numbers requests (Q1) and places response slots
// (Q7), observed through a recording transport.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "proto_fixture.h"
#include "virtio_proto/ccmd_encoder.h"

using namespace fdnc;
using namespace fdnc::wire;
using fdnc::test::RecordingTransport;

namespace {

constexpr uint32_t kArea = kShmemSize - kShmemRspMemOffset;

std::vector<Ccmd> records(const std::vector<uint8_t>& bytes) {
    auto d = decode_all(bytes, kArea);
    REQUIRE(d.error == DecodeError::None);
    return d.records;
}

uint32_t slot_len(RecordingTransport& t, uint32_t rsp_off) {
    uint32_t v;
    std::memcpy(&v, t.shmem.data() + kShmemRspMemOffset + rsp_off, 4);
    return v;
}

} // namespace

TEST_CASE("enqueued requests stay buffered until flush sends them as one ring-0 execbuf") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    for (int i = 0; i < 3; ++i) {
        auto e = ccmd::nop();
        REQUIRE(rb.enqueue(e.span()) != 0);
    }
    CHECK(t.count() == 0);
    CHECK(rb.buffered_bytes() == 48);
    REQUIRE(rb.flush() == 0);
    REQUIRE(t.calls.size() == 1);
    CHECK(t.calls[0].kind == RecordingTransport::Call::Execbuf);
    CHECK(t.calls[0].ring == 0);
    CHECK_FALSE(t.calls[0].fence_out);
    CHECK(records(t.calls[0].bytes).size() == 3);
    CHECK(rb.stats().ccmds == 3);
    CHECK(rb.stats().batches == 1);
    REQUIRE(rb.flush() == 0);
    CHECK(t.calls.size() == 1); // nothing buffered: no empty execbuf
}

TEST_CASE("a flush that drops requests breaks the buffer for good; a failed fence-only flush does not") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    t.execbuf_error = -EPIPE;
    uint8_t rsp[8];
    auto q = ccmd::nop();
    CHECK(rb.send_sync(q.span(), rsp, 1000000) == -EPIPE); // nothing dropped before it: its own request
    CHECK(rb.broken() == -EPIPE); // ... which the failed execbuf did drop
    RecordingTransport t2;
    RequestBuffer rb2(t2, t2.shmem.data(), kShmemSize);
    auto e = ccmd::nop();
    REQUIRE(rb2.enqueue(e.span()) != 0);
    t2.execbuf_error = -ETIMEDOUT; // e.g. a vtest write cut mid-message
    CHECK(rb2.flush() == -ETIMEDOUT);
    CHECK(rb2.broken() == -ETIMEDOUT);
    t2.execbuf_error = 0; // even a healthy transport cannot resurrect the stream
    int err = 0;
    auto e2 = ccmd::nop();
    CHECK(rb2.enqueue(e2.span(), 0, &err) == 0);
    CHECK(err == -ETIMEDOUT);
    CHECK(rb2.flush() == -ETIMEDOUT);
    TransportFence f;
    auto s = ccmd::nop();
    CHECK(rb2.submit(s.span(), 1, &f) == -ETIMEDOUT);
    CHECK(t2.count() == 1); // nothing reached the transport after the break
}

TEST_CASE("a request that would overflow 16 KiB flushes the buffer before it") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    const size_t per = 16;
    const size_t fit = kRequestBufferSize / per;
    for (size_t i = 0; i < fit; ++i) {
        auto e = ccmd::nop();
        REQUIRE(rb.enqueue(e.span()) != 0);
    }
    CHECK(t.count() == 0); // exactly full is still buffered
    auto e = ccmd::nop();
    REQUIRE(rb.enqueue(e.span()) != 0);
    REQUIRE(t.calls.size() == 1);
    CHECK(t.calls[0].bytes.size() == kRequestBufferSize);
    CHECK(rb.buffered_bytes() == per);
}

TEST_CASE("create_blob flushes buffered requests first and tunnels its request with the next seqno") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto a = ccmd::nop();
    const uint32_t s1 = rb.enqueue(a.span());
    auto g = ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 2);
    BlobCreateArgs args;
    args.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
    args.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    args.size = 4096;
    args.blob_id = 2;
    uint32_t h = 0;
    REQUIRE(rb.create_blob(args, g.span(), &h) == 0);
    REQUIRE(t.calls.size() == 2);
    CHECK(t.calls[0].kind == RecordingTransport::Call::Execbuf); // Q4: earlier requests first
    CHECK(t.calls[1].kind == RecordingTransport::Call::CreateBlob);
    CHECK(t.calls[1].blob_id == 2);
    auto rec = records(t.calls[1].bytes);
    REQUIRE(rec.size() == 1);
    CHECK(rec[0].cmd == MSM_CCMD_GEM_NEW);
    CHECK(rec[0].seqno == s1 + 1);
}

TEST_CASE("submit numbers itself, flushes the buffered requests, then goes alone on its ring with a fence") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto a = ccmd::gem_set_iova(1, 0x1'0000'0000ull);
    const uint32_t s1 = rb.enqueue(a.span());
    auto s = ccmd::gem_submit(MSM_PIPE_3D0, 1, 1, {}, {});
    TransportFence f;
    REQUIRE(rb.submit(s.span(), 2, &f) == 0);
    REQUIRE(t.calls.size() == 2);
    CHECK(t.calls[0].ring == 0);
    CHECK(records(t.calls[0].bytes)[0].seqno == s1);
    CHECK(t.calls[1].ring == 2);
    CHECK(t.calls[1].fence_out);
    CHECK(records(t.calls[1].bytes)[0].seqno == s1 + 1);
    CHECK(f.ring_idx == 2);
    CHECK(f.point != 0);
}

TEST_CASE("send_sync flushes with a ring-0 fence and waits for the request's seqno") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto a = ccmd::nop();
    rb.enqueue(a.span());
    auto g = ccmd::get_param(MSM_PARAM_GPU_ID);
    std::vector<uint8_t> rsp(g.rsp_size);
    REQUIRE(rb.send_sync(g.span(), rsp, 1'000'000'000) == 0);
    REQUIRE(t.calls.size() == 1);
    CHECK(t.calls[0].fence_out);
    CHECK(t.calls[0].ring == 0);
    CHECK(records(t.calls[0].bytes).size() == 2);
    CHECK(rb.host_seqno() == g.seqno());
}

TEST_CASE("seqnos go up by one across enqueue, create_blob and submit") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto a = ccmd::nop(), b = ccmd::wait_fence(1, 1), c = ccmd::gem_new(0x1'0000'0000ull, 4096, MSM_BO_WC, 3),
         d = ccmd::gem_submit(MSM_PIPE_3D0, 1, 1, {}, {});
    rb.enqueue(a.span());
    rb.enqueue(b.span());
    BlobCreateArgs args{VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, 4096, 3, {}};
    uint32_t h;
    REQUIRE(rb.create_blob(args, c.span(), &h) == 0);
    REQUIRE(rb.submit(d.span(), 1, nullptr) == 0);
    CHECK(a.seqno() == 1);
    CHECK(b.seqno() == 2);
    CHECK(c.seqno() == 3);
    CHECK(d.seqno() == 4);
}

TEST_CASE("response slots are 8-aligned, pre-written with their size and wrap to the area start") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    CHECK(rb.rsp_area_size() == kArea);
    std::vector<uint32_t> offs;
    const int n = kArea / 24 + 3; // enough 24-byte slots to wrap once
    for (int i = 0; i < n; ++i) {
        auto q = ccmd::submitqueue_query(1, 0, 8); // 12 + 8 = 20 -> slot of 24
        REQUIRE(rb.enqueue(q.span()) != 0);
        offs.push_back(q.hdr().rsp_off);
        CHECK(q.hdr().rsp_off % 8 == 0);
        CHECK(q.hdr().rsp_off + 24 <= kArea);
        CHECK(slot_len(t, q.hdr().rsp_off) == 24);
    }
    CHECK(offs[0] == 0);
    CHECK(offs[1] == 24);
    const auto wrap = std::find(offs.begin() + 1, offs.end(), 0u);
    REQUIRE(wrap != offs.end()); // wrapped to 0
    CHECK(*(wrap - 1) + 24 < kArea);
    CHECK(*(wrap - 1) + 48 >= kArea); // Q7: wrapped only when the next slot would reach the end
}

TEST_CASE("a request with a response gets its own slot even when the caller ignores the response") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto a = ccmd::get_param(1), b = ccmd::get_param(2);
    REQUIRE(rb.enqueue(a.span(), 0) != 0);
    REQUIRE(rb.enqueue(b.span(), 0) != 0);
    CHECK(a.hdr().rsp_off != b.hdr().rsp_off);
    CHECK(b.hdr().rsp_off >= a.hdr().rsp_off + 32);
}

TEST_CASE("malformed or oversized requests are refused with an errno and never buffered") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    int err = 0;
    auto e = ccmd::nop();
    e.bytes[4] = 20; // hdr.len disagrees with the span
    CHECK(rb.enqueue(e.span(), 0, &err) == 0);
    CHECK(err == -EINVAL);
    std::vector<uint8_t> short_req(8, 0);
    CHECK(rb.enqueue(short_req, 0, &err) == 0);
    CHECK(err == -EINVAL);
    auto big = ccmd::gem_upload(1, 0, std::vector<uint8_t>(kRequestBufferSize, 0));
    CHECK(rb.enqueue(big.span(), 0, &err) == 0);
    CHECK(err == -E2BIG);
    CHECK(rb.buffered_bytes() == 0);
    CHECK(rb.stats().ccmds == 0);
}

TEST_CASE("without a shared page a request with a response fails with ENOMEM") {
    RecordingTransport t;
    RequestBuffer rb(t, nullptr, 0);
    int err = 0;
    auto g = ccmd::get_param(1);
    CHECK(rb.enqueue(g.span(), 0, &err) == 0);
    CHECK(err == -ENOMEM);
    auto n = ccmd::nop();
    CHECK(rb.enqueue(n.span(), 0, &err) != 0); // H8: requests without a response still go
    CHECK(rb.host_seqno() == 0);
}

TEST_CASE("four threads enqueueing concurrently get unique seqnos in stream order and disjoint live slots") {
    RecordingTransport t;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    const int per_thread = 3000;
    std::atomic<int> failures{0}; // Catch2 assertions are not thread-safe
    std::vector<std::thread> th;
    for (int k = 0; k < 4; ++k)
        th.emplace_back([&, k] {
            for (int i = 0; i < per_thread; ++i) {
                auto e = (i + k) % 3 == 0 ? ccmd::nop() : ccmd::get_param(1 + k);
                if (rb.enqueue(e.span()) == 0) ++failures;
            }
        });
    for (auto& x : th) x.join();
    REQUIRE(failures == 0);
    REQUIRE(rb.flush() == 0);
    std::vector<Ccmd> all;
    for (auto& c : t.calls) {
        CHECK(c.bytes.size() <= kRequestBufferSize);
        auto d = decode_all(c.bytes, kArea);
        REQUIRE(d.error == DecodeError::None);
        all.insert(all.end(), d.records.begin(), d.records.end());
    }
    REQUIRE(all.size() == 4u * per_thread);
    for (size_t i = 0; i < all.size(); ++i) CHECK(all[i].seqno == i + 1); // Q1, in wire order
    // Slots handed out between two wraps never overlap.
    std::vector<std::pair<uint32_t, uint32_t>> window;
    for (const Ccmd& c : all) {
        if (c.rsp_size == 0) continue;
        if (!window.empty() && c.rsp_off < window.back().first) window.clear(); // wrapped
        for (auto& [off, sz] : window) REQUIRE((c.rsp_off >= off + sz || c.rsp_off + 32 <= off));
        window.emplace_back(c.rsp_off, 32u);
    }
}

TEST_CASE("send_sync reports a response slot whose len the host garbled as EPROTO") {
    RecordingTransport t;
    t.garbage_rsp_len = 0x10000; // larger than the slot the guest reserved
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto g = ccmd::get_param(MSM_PARAM_GPU_ID);
    std::vector<uint8_t> rsp(g.rsp_size);
    CHECK(rb.send_sync(g.span(), rsp, 1'000'000'000) == -EPROTO);
    t.garbage_rsp_len = 2; // shorter than the rsp header itself
    auto h = ccmd::get_param(MSM_PARAM_GPU_ID);
    CHECK(rb.send_sync(h.span(), rsp, 1'000'000'000) == -EPROTO);
}

TEST_CASE("send_sync gives up with ETIMEDOUT when the host seqno never reaches the request") {
    RecordingTransport t;
    t.execute = false;
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    auto g = ccmd::get_param(MSM_PARAM_GPU_ID);
    std::vector<uint8_t> rsp(g.rsp_size);
    CHECK(rb.send_sync(g.span(), rsp, 1'000'000) == -ETIMEDOUT);
    CHECK(rb.wait_seqno(g.seqno(), 0) == -ETIMEDOUT);
}

TEST_CASE("async_error and global_faults are read from the shared page") {
    RecordingTransport t;
    const uint32_t err = 3, faults = 5;
    std::memcpy(t.shmem.data() + offsetof(msm_shmem, async_error), &err, 4);
    std::memcpy(t.shmem.data() + offsetof(msm_shmem, global_faults), &faults, 4);
    RequestBuffer rb(t, t.shmem.data(), kShmemSize);
    CHECK(rb.async_error() == 3);
    CHECK(rb.global_faults() == 5);
    const uint32_t old_host = 8; // rsp_mem_offset 8: an older host without the msm fields
    std::memcpy(t.shmem.data() + offsetof(vdrm_shmem, rsp_mem_offset), &old_host, 4);
    RequestBuffer old_rb(t, t.shmem.data(), kShmemSize);
    CHECK(old_rb.async_error() == 0);
    CHECK(old_rb.rsp_area_size() == kShmemSize - 8);
}
