// Writer output: Mesa's order (§9.4), both encodings, and write -> read equality.
#include <catch2/catch.hpp>

#include <random>

#include "replay/capture_loader.h"
#include "replay/rd_reader.h"
#include "replay/rd_writer.h"
#include "rd_test_util.h"

using namespace fdnc::rd;
using namespace fdnc::rd::test;

namespace {

// Seeded random capture: shared and per-submit buffers, some with contents, 64-bit iovas.
Capture random_capture(uint32_t seed) {
    std::mt19937 rng(seed);
    auto pick = [&](uint32_t lo, uint32_t hi) { return std::uniform_int_distribution<uint32_t>(lo, hi)(rng); };
    CaptureBuilder b;
    b.set_gpu_id(pick(300, 750));
    if (pick(0, 1)) b.set_chip_id(uint64_t{pick(1, 0xffff)} << 32 | pick(0, 0xffffffffu));
    const uint32_t submits = pick(1, 12);
    for (uint32_t s = 0; s < submits; ++s) {
        b.cmd_text("proc" + std::to_string(pick(0, 2)) + "/" + std::to_string(100 + s) + ": fence=" +
                   std::to_string(s));
        const uint32_t nbuf = pick(1, 6);
        uint64_t iova = (uint64_t{pick(0, 3)} << 32) + 0x100000ull * pick(1, 64);
        uint64_t first_iova = iova;
        for (uint32_t i = 0; i < nbuf; ++i) {
            const uint32_t size = 4 * pick(1, 2048);
            b.gpuaddr(iova, size);
            if (pick(0, 2)) REQUIRE(b.contents(filled(pick(0, size), static_cast<uint8_t>(pick(0, 255)))));
            if (i == 0) first_iova = iova;
            iova += size + 4096ull * pick(0, 4);
        }
        const uint32_t ncmd = pick(1, 3);
        for (uint32_t i = 0; i < ncmd; ++i) b.cmdstream(first_iova, 4 * pick(0, 1));
    }
    WrBuffer wb{0x5000, 64, true, "dump.bin"};
    if (pick(0, 1)) b.wrbuffer(wb);
    return std::move(b).finish();
}

void round_trip(const Capture& c, const std::string& path) {
    auto w = write_capture(path, c);
    REQUIRE(w.ok());
    auto r = load_capture(path, LoadOptions{1});   // the builder above used exact ranges
    REQUIRE(r.ok());
    INFO(path);
    CHECK(capture_diff(c, r.value()) == "");
    CHECK(r.value().stats().buffers == c.stats().buffers);
    CHECK(r.value().stats().max_live_buffers == c.stats().max_live_buffers);
}

} // namespace

TEST_CASE("random captures survive a write and read back as plain .rd") {
    TempDir dir;
    for (uint32_t seed = 1; seed <= 40; ++seed) {
        INFO("seed " << seed);
        round_trip(random_capture(seed), dir.file("r.rd"));
    }
}

TEST_CASE("random captures survive a write and read back as .rd.gz") {
    TempDir dir;
    for (uint32_t seed = 100; seed <= 140; ++seed) {
        INFO("seed " << seed);
        round_trip(random_capture(seed), dir.file("r.rd.gz"));
    }
}

TEST_CASE("the .gz extension selects gzip output and .rd selects plain output") {
    TempDir dir;
    const Capture c = random_capture(7);
    REQUIRE(write_capture(dir.file("a.rd.gz"), c).ok());
    REQUIRE(write_capture(dir.file("a.rd"), c).ok());
    const Bytes z = read_file(dir.file("a.rd.gz"));
    const Bytes p = read_file(dir.file("a.rd"));
    REQUIRE(z.size() > 2);
    CHECK((z[0] == 0x1f && z[1] == 0x8b));
    CHECK_FALSE((p[0] == 0x1f && p[1] == 0x8b));
}

TEST_CASE("the writer emits Mesa's section order with the 12-byte address form") {
    TempDir dir;
    auto w = RdWriter::create(dir.file("o.rd"));
    REQUIRE(w.ok());
    RdWriter& wr = w.value();
    REQUIRE(wr.header(630, 0x06030001));
    REQUIRE(wr.cmd("fdnc"));
    const Bytes data = filled(8, 3);
    REQUIRE(wr.buffer(0x100002000ull, 64, data));
    REQUIRE(wr.cmdstream(0x100002000ull, 64));
    REQUIRE(wr.close());

    Bytes expect;
    section(expect, SectType::gpu_id, words({630}));
    Bytes chip;
    put64(chip, 0x06030001);
    section(expect, SectType::chip_id, chip);
    section(expect, SectType::cmd, {'f', 'd', 'n', 'c', 0, 0, 0, 0});
    section(expect, SectType::gpuaddr, words({0x2000, 64, 1}));
    section(expect, SectType::buffer_contents, data);
    section(expect, SectType::cmdstream_addr, words({0x2000, 16, 1}));
    CHECK(read_file(dir.file("o.rd")) == expect);
    CHECK(wr.bytes_written() == expect.size());
}

TEST_CASE("the writer refuses sizes the format cannot carry") {
    TempDir dir;
    auto w = RdWriter::create(dir.file("bad.rd"));
    REQUIRE(w.ok());
    CHECK_FALSE(w.value().buffer(0x1000, uint64_t{1} << 33));
    CHECK(w.value().error().code == RdErrc::WriteFailed);
    auto w2 = RdWriter::create(dir.file("bad2.rd"));
    REQUIRE(w2.ok());
    CHECK_FALSE(w2.value().cmdstream(0x1000, 6));
    CHECK_THAT(w2.value().error().what(), Catch::Contains("dwords"));
}

TEST_CASE("creating a writer in a missing directory is a write_failed error") {
    auto w = RdWriter::create("/nonexistent/dir/out.rd");
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == RdErrc::WriteFailed);
}
