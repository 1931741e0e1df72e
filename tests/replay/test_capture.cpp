// The replay model: RP4 submit boundaries, per-submit allocations, lifetimes and stats.
#include <catch2/catch.hpp>

#include "replay/capture.h"
#include "rd_test_util.h"

using namespace fdnc::rd;
using namespace fdnc::rd::test;

TEST_CASE("a GPUADDR after a CMDSTREAM_ADDR starts a new submit (RP4)") {
    CaptureBuilder b;
    b.cmd_text("a/1: fence=1");
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 0x40);
    b.cmdstream(0x1040, 0x40);   // same submit: no GPUADDR in between
    b.cmd_text("a/1: fence=2");
    b.gpuaddr(0x2000, 0x100);
    b.cmdstream(0x2000, 0x40);
    Capture c = std::move(b).finish();
    REQUIRE(c.submits.size() == 2);
    CHECK(c.submits[0].cmds.size() == 2);
    CHECK(c.submits[0].cmd == "a/1: fence=1");
    CHECK(c.submits[1].cmd == "a/1: fence=2");
    CHECK(c.submits[1].decls.size() == 1);
}

TEST_CASE("decls after the last cmdstream form no submit and are counted") {
    CaptureBuilder b;
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 0x40);
    b.gpuaddr(0x9000, 0x100);
    Capture c = std::move(b).finish();
    CHECK(c.submits.size() == 1);
    CHECK(c.anomalies.trailing_decls == 1);
}

TEST_CASE("a buffer reused across submits has one lifetime from first to last use") {
    CaptureBuilder b;
    for (int i = 0; i < 3; ++i) {
        b.gpuaddr(0x10000, 0x1000);   // long-lived
        b.gpuaddr(0x20000 + 0x1000 * static_cast<uint64_t>(i), 0x100);   // per-submit
        b.cmdstream(0x20000 + 0x1000 * static_cast<uint64_t>(i), 0x40);
    }
    Capture c = std::move(b).finish();
    REQUIRE(c.submits.size() == 3);
    REQUIRE(c.lifetimes.size() == 4);
    const BufferLifetime& shared = c.lifetimes[c.submits[0].buffers[0].lifetime];
    CHECK(shared.iova == 0x10000);
    CHECK(shared.first_submit == 0);
    CHECK(shared.last_submit == 2);
    CHECK(shared.uses == 3);
    CHECK(c.submits[2].buffers[0].lifetime == c.submits[0].buffers[0].lifetime);
    const CaptureStats st = c.stats();
    CHECK(st.max_live_buffers == 2);
    CHECK(st.identities == 4);
    CHECK(st.iova_min == 0x10000);
    CHECK(st.iova_end == 0x22100);
}

TEST_CASE("an overlapping different buffer in between starts a new lifetime for the old identity") {
    CaptureBuilder b;
    b.gpuaddr(0x10000, 0x1000);
    b.cmdstream(0x10000, 0x40);
    b.gpuaddr(0x10800, 0x2000);   // overlaps the first
    b.cmdstream(0x10800, 0x40);
    b.gpuaddr(0x10000, 0x1000);
    b.cmdstream(0x10000, 0x40);
    Capture c = std::move(b).finish();
    REQUIRE(c.lifetimes.size() == 3);
    CHECK(c.submits[0].buffers[0].lifetime != c.submits[2].buffers[0].lifetime);
    CHECK(c.stats().identities == 2);
    CHECK(c.stats().max_live_buffers == 1);
}

TEST_CASE("overlapping decls in one submit merge into one allocation with uploads at offsets") {
    const Bytes whole = filled(0x2000, 1);
    const Bytes part = filled(0x634, 9);
    CaptureBuilder b;
    b.gpuaddr(0x27ce000, 0x2000);
    REQUIRE(b.contents(whole));
    b.gpuaddr(0x27ce000, 0x634);   // the kernel's "cmd range" decl inside the bo
    REQUIRE(b.contents(part));
    b.gpuaddr(0x27cf000, 0x2000);  // partial overlap: extends the allocation
    b.cmdstream(0x27ce000, 0x634);
    Capture c = std::move(b).finish();
    REQUIRE(c.submits.size() == 1);
    const Submit& s = c.submits[0];
    REQUIRE(s.buffers.size() == 1);
    CHECK(s.buffers[0].iova == 0x27ce000);
    CHECK(s.buffers[0].size == 0x3000);
    REQUIRE(s.buffers[0].uploads.size() == 2);
    CHECK(s.buffers[0].uploads[0].data.size == 0x2000);
    CHECK(s.buffers[0].uploads[1].offset_in_buffer == 0);
    CHECK(s.buffers[0].uploads[1].data.size == 0x634);
    CHECK(s.buffers[0].has_cmdstream);
    CHECK(c.anomalies.merged_decls == 2);
    CHECK(c.bytes.size() == 0x2000 + 0x634);   // contents stored once
}

TEST_CASE("a cmdstream no decl covers gets an implicit buffer of its own range and is counted") {
    CaptureBuilder b;
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 0x10);
    b.cmdstream(0x8000, 0x40);   // undeclared, like fd-clouds.rd.gz's second cmdstream
    Capture c = std::move(b).finish();
    const Submit& s = c.submits[0];
    REQUIRE(s.buffers.size() == 2);
    CHECK_FALSE(s.buffers[0].implicit);
    CHECK(s.buffers[1].implicit);
    CHECK(s.buffers[1].iova == 0x8000);
    CHECK(s.buffers[1].size == 0x40);
    CHECK(s.cmds[1].buffer == 1);
    CHECK(s.cmds[1].offset_in_buffer == 0);
    CHECK(c.anomalies.cmds_outside_buffers == 1);
}

TEST_CASE("a cmdstream running past its buffer extends that allocation") {
    CaptureBuilder b;
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x10f0, 0x20);
    Capture c = std::move(b).finish();
    const Submit& s = c.submits[0];
    REQUIRE(s.buffers.size() == 1);
    CHECK(s.buffers[0].size == 0x110);
    CHECK_FALSE(s.buffers[0].implicit);
    CHECK(s.cmds[0].buffer == 0);
    CHECK(s.cmds[0].offset_in_buffer == 0xf0);
    CHECK(c.anomalies.cmds_outside_buffers == 1);
    CHECK(c.anomalies.merged_decls == 0);
}

TEST_CASE("contents_change is set only when uploaded bytes differ between uses") {
    CaptureBuilder b;
    const Bytes x = filled(16, 1);
    const Bytes y = filled(16, 2);
    for (const Bytes* data : {&x, &x, &y}) {
        b.gpuaddr(0x1000, 16);
        REQUIRE(b.contents(*data));
        b.gpuaddr(0x8000, 16);
        REQUIRE(b.contents(x));
        b.cmdstream(0x8000, 16);
    }
    Capture c = std::move(b).finish();
    REQUIRE(c.lifetimes.size() == 2);
    const BufferLifetime& changing = c.lifetimes[c.submits[0].buffers[0].lifetime];
    const BufferLifetime& stable = c.lifetimes[c.submits[0].buffers[1].lifetime];
    CHECK(changing.contents_change);
    CHECK(changing.uploads == 3);
    CHECK_FALSE(stable.contents_change);
}

TEST_CASE("contents are refused without a decl, twice for one decl, or beyond its size") {
    CaptureBuilder b;
    const Bytes d = filled(8, 0);
    CHECK_FALSE(b.contents(d));
    b.gpuaddr(0x1000, 4);
    CHECK_FALSE(b.contents(d));
    CHECK(b.store().empty());
    b.gpuaddr(0x2000, 8);
    CHECK(b.contents(d));
    CHECK_FALSE(b.contents(d));
    CHECK_THAT(b.last_problem(), Catch::Contains("second"));
}

TEST_CASE("zero-size decls are kept as decls but get no allocation") {
    CaptureBuilder b;
    b.gpuaddr(0x1000, 0);
    b.gpuaddr(0x2000, 0x100);
    b.cmdstream(0x2000, 0x100);
    Capture c = std::move(b).finish();
    CHECK(c.submits[0].decls.size() == 2);
    CHECK(c.submits[0].buffers.size() == 1);
    CHECK(c.anomalies.zero_size_decls == 1);
}

TEST_CASE("process_name strips the kernel's pid and fence suffix only") {
    CHECK(process_name("glmark2-es2/53710: fence=165247") == "glmark2-es2");
    CHECK(process_name("X/23360: fence=1029603") == "X");
    CHECK(process_name("deqp-vk") == "deqp-vk");
    CHECK(process_name("a/b") == "a/b");
    CHECK(process_name("/12: x") == "/12: x");
}

TEST_CASE("max live bytes and max live buffers are maxima over submits, taken separately") {
    CaptureBuilder b;
    b.gpuaddr(0x1000, 0x100);
    b.gpuaddr(0x2000, 0x200);
    b.cmdstream(0x1000, 4);
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 4);
    b.gpuaddr(0x5000, 0x1000);
    b.cmdstream(0x5000, 4);
    Capture c = std::move(b).finish();
    const CaptureStats st = c.stats();
    CHECK(st.max_live_buffers == 2);
    CHECK(st.max_live_bytes == 0x1000);   // submit 2: one big buffer beats 0x300 at submit 0
    CHECK(st.buffer_bytes == 0x1300);
}

TEST_CASE("lifetime events allocate at first use and free after last use") {
    CaptureBuilder b;
    b.gpuaddr(0x3000, 0x100);
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 4);
    b.gpuaddr(0x1000, 0x100);
    b.cmdstream(0x1000, 4);
    b.gpuaddr(0x1000, 0x100);
    b.gpuaddr(0x2000, 0x100);
    b.cmdstream(0x2000, 4);
    Capture c = std::move(b).finish();
    const LifetimeEvents ev = lifetime_events(c);
    REQUIRE(ev.alloc_before.size() == 3);
    auto iovas = [&](const std::vector<uint32_t>& v) {
        std::vector<uint64_t> out;
        for (uint32_t i : v) out.push_back(c.lifetimes[i].iova);
        return out;
    };
    CHECK(iovas(ev.alloc_before[0]) == std::vector<uint64_t>{0x1000, 0x3000});
    CHECK(iovas(ev.free_after[0]) == std::vector<uint64_t>{0x3000});
    CHECK(ev.alloc_before[1].empty());
    CHECK(ev.free_after[1].empty());
    CHECK(iovas(ev.alloc_before[2]) == std::vector<uint64_t>{0x2000});
    CHECK(iovas(ev.free_after[2]) == std::vector<uint64_t>{0x1000, 0x2000});
}

TEST_CASE("the RP6 default filter skips X, fdperf, chrome and surfaceflinger submits only") {
    CHECK(rp6_default_skips("X/23360: fence=1029603"));
    CHECK(rp6_default_skips("fdperf"));
    CHECK(rp6_default_skips("chrome/1: fence=2"));
    CHECK(rp6_default_skips("surfaceflinger"));
    CHECK_FALSE(rp6_default_skips("glxgears/23375: fence=1029604"));
    CHECK_FALSE(rp6_default_skips("xterm"));
    CHECK_FALSE(rp6_default_skips(""));
}

TEST_CASE("page alignment widens unaligned decls and merges ones that share a page") {
    // The es2gears-a320 pattern: two kernel cmd-range snapshots back to back, mid-page.
    CaptureBuilder b;
    b.set_alignment(4096);
    b.gpuaddr(0x11842370, 25320);
    REQUIRE(b.contents(filled(25320, 1)));
    b.gpuaddr(0x11848658, 1952);
    REQUIRE(b.contents(filled(1952, 2)));
    b.cmdstream(0x11848658, 1952);
    Capture c = std::move(b).finish();
    const Submit& s = c.submits[0];
    REQUIRE(s.buffers.size() == 1);
    CHECK(s.buffers[0].iova == 0x11842000);
    CHECK(s.buffers[0].size == 0x7000);
    REQUIRE(s.buffers[0].uploads.size() == 2);
    CHECK(s.buffers[0].uploads[0].offset_in_buffer == 0x370);
    CHECK(s.buffers[0].uploads[1].offset_in_buffer == 0x6658);
    CHECK(s.cmds[0].offset_in_buffer == 0x6658);
    CHECK(s.decls[0].iova == 0x11842370);   // decls stay exact
}

TEST_CASE("alignment 1 keeps the declared ranges and a non-power-of-two alignment means 1") {
    for (uint64_t a : {uint64_t{1}, uint64_t{3000}, uint64_t{0}}) {
        CaptureBuilder b;
        b.set_alignment(a);
        b.gpuaddr(0x11842370, 25320);
        b.gpuaddr(0x11848658, 1952);
        b.cmdstream(0x11848658, 1952);
        Capture c = std::move(b).finish();
        INFO("alignment " << a);
        REQUIRE(c.submits[0].buffers.size() == 2);
        CHECK(c.submits[0].buffers[1].iova == 0x11848658);
        CHECK(c.submits[0].buffers[1].size == 1952);
    }
}
