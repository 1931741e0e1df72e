// Section-stream parsing and error reporting on crafted files (PROTOCOL.md §9.1-9.3).
#include <catch2/catch.hpp>

#include <random>

#include "replay/capture_loader.h"
#include "replay/rd_reader.h"
#include "rd_test_util.h"

using namespace fdnc::rd;
using namespace fdnc::rd::test;

namespace {

// gpu id, chip id, one submit: a 12-byte GPUADDR with contents and a cmdstream inside it.
Bytes small_capture() {
    Bytes b;
    section(b, SectType::gpu_id, words({630}));
    section(b, SectType::chip_id, [] { Bytes p; put64(p, 0x06030001); return p; }());
    section(b, SectType::cmd, text("app/12: fence=3"));
    section(b, SectType::gpuaddr, words({0x1000, 64, 0x1}));
    section(b, SectType::buffer_contents, filled(64, 1));
    section(b, SectType::cmdstream_addr, words({0x1000, 16, 0x1}));
    return b;
}

Result<Capture> load_bytes(const TempDir& dir, const Bytes& b, const std::string& name = "t.rd") {
    write_file(dir.file(name), b);
    return load_capture(dir.file(name));
}

} // namespace

TEST_CASE("the reader returns every section of a plain stream with its offset") {
    TempDir dir;
    write_file(dir.file("a.rd"), small_capture());
    auto r = RdReader::open(dir.file("a.rd"));
    REQUIRE(r.ok());
    RdReader& rd = r.value();
    CHECK_FALSE(rd.compressed());
    std::vector<uint32_t> types;
    std::vector<uint64_t> offsets;
    Section s;
    while (rd.next(s) == RdReader::Next::Section) {
        types.push_back(s.header.type);
        offsets.push_back(s.header.offset);
    }
    REQUIRE_FALSE(rd.failed());
    CHECK(types == std::vector<uint32_t>{13, 14, 2, 3, 12, 6});
    CHECK(offsets == std::vector<uint64_t>{0, 12, 28, 51, 71, 143});
}

TEST_CASE("the reader detects gzip by magic and reads the same sections") {
    TempDir dir;
    write_file(dir.file("a.bin"), gzip(small_capture()));   // no .gz name on purpose
    auto r = RdReader::open(dir.file("a.bin"));
    REQUIRE(r.ok());
    CHECK(r.value().compressed());
    size_t n = 0;
    Section s;
    while (r.value().next(s) == RdReader::Next::Section) ++n;
    CHECK_FALSE(r.value().failed());
    CHECK(n == 6);
    CHECK(r.value().offset() == small_capture().size());
}

TEST_CASE("filler header pairs are skipped without a payload") {
    TempDir dir;
    Bytes b;
    put32(b, 0xffffffff);
    put32(b, 0xffffffff);
    Bytes rest = small_capture();
    b.insert(b.end(), rest.begin(), rest.end());
    put32(b, 0xffffffff);
    put32(b, 0xffffffff);
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    CHECK(c.value().anomalies.filler_pairs == 2);
    CHECK(c.value().submits.size() == 1);
}

TEST_CASE("a loaded capture has the header facts, the 64-bit iova and the cmdstream in bytes") {
    TempDir dir;
    auto c = load_bytes(dir, small_capture());
    REQUIRE(c.ok());
    const Capture& cap = c.value();
    CHECK(cap.gpu_id == 630);
    REQUIRE(cap.chip_id.has_value());
    CHECK(*cap.chip_id == 0x06030001);
    CHECK(cap.processes == std::vector<std::string>{"app"});
    REQUIRE(cap.submits.size() == 1);
    const Submit& s = cap.submits[0];
    CHECK(s.cmd == "app/12: fence=3");
    REQUIRE(s.decls.size() == 1);
    CHECK(s.decls[0].iova == 0x100001000ull);
    CHECK(s.decls[0].size == 64);
    REQUIRE(s.decls[0].contents.has_value());
    CHECK(Bytes(cap.data(*s.decls[0].contents).begin(), cap.data(*s.decls[0].contents).end()) == filled(64, 1));
    REQUIRE(s.cmds.size() == 1);
    CHECK(s.cmds[0].iova == 0x100001000ull);
    CHECK(s.cmds[0].size_bytes == 64);
    CHECK(s.cmds[0].buffer == 0);
}

TEST_CASE("the 8-byte address form is a 32-bit iova with no high word") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpuaddr, words({0xfff00000u, 4096}));
    section(b, SectType::cmdstream_addr, words({0xfff00010u, 8}));
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    REQUIRE(c.value().submits.size() == 1);
    CHECK(c.value().submits[0].decls[0].iova == 0xfff00000u);
    CHECK(c.value().submits[0].cmds[0].size_bytes == 32);
    CHECK(c.value().submits[0].cmds[0].offset_in_buffer == 0x10);
}

TEST_CASE("unknown and legacy section types are skipped and counted per type") {
    TempDir dir;
    Bytes b = small_capture();
    section(b, static_cast<SectType>(99), filled(5, 0));
    section(b, static_cast<SectType>(99), {});
    section(b, SectType::vert_shader, text("void main(){}"));
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    CHECK(c.value().skipped_sections.at(99) == 2);
    CHECK(c.value().skipped_sections.at(10) == 1);
    CHECK(c.value().stats().skipped_sections == 3);
    CHECK(c.value().submits.size() == 1);
}

TEST_CASE("RD_CMD text stops at the first NUL even when the padding is garbage") {
    TempDir dir;
    Bytes b;
    Bytes t = text("glxgears/23375: fence=7");
    t.push_back(0);
    t.push_back('q');
    section(b, SectType::cmd, t);
    section(b, SectType::gpuaddr, words({0x1000, 16}));
    section(b, SectType::cmdstream_addr, words({0x1000, 4}));
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    CHECK(c.value().submits[0].cmd == "glxgears/23375: fence=7");
    CHECK(c.value().processes == std::vector<std::string>{"glxgears"});
}

TEST_CASE("RD_WRBUFFER is parsed into iova, size, clear flag and name") {
    TempDir dir;
    Bytes b = small_capture();
    Bytes p;
    put64(p, 0x200000);
    put64(p, 4096);
    put64(p, 1);
    Bytes name = text("out.bin");
    p.insert(p.end(), name.begin(), name.end());
    p.push_back(0);
    section(b, SectType::wrbuffer, p);
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    REQUIRE(c.value().wrbuffers.size() == 1);
    CHECK(c.value().wrbuffers[0].iova == 0x200000);
    CHECK(c.value().wrbuffers[0].size == 4096);
    CHECK(c.value().wrbuffers[0].clear);
    CHECK(c.value().wrbuffers[0].name == "out.bin");
}

// ---- corrupt input: each a named error with the offset -------------------------------------

TEST_CASE("an empty file is an empty_file error at offset 0") {
    TempDir dir;
    auto c = load_bytes(dir, {});
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::EmptyFile);
    CHECK(c.error().offset == 0);
    CHECK_THAT(c.error().what(), Catch::Contains("offset 0"));
}

TEST_CASE("an empty gzip stream is an empty_file error") {
    TempDir dir;
    auto c = load_bytes(dir, gzip({}), "e.rd.gz");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::EmptyFile);
}

TEST_CASE("a truncated section header names the offset where the header starts") {
    TempDir dir;
    Bytes b = small_capture();
    const uint64_t end = b.size();
    b.push_back(3);
    b.push_back(0);
    b.push_back(0);
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::TruncatedHeader);
    CHECK(c.error().offset == end);
    CHECK_THAT(c.error().what(), Catch::Contains("8-byte section header"));
}

TEST_CASE("a truncated payload in a plain file names the section's offset") {
    TempDir dir;
    Bytes b = small_capture();
    b.resize(b.size() - 5);   // cut inside the last CMDSTREAM_ADDR
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::TruncatedPayload);
    CHECK(c.error().offset == 143);
    CHECK_THAT(c.error().what(), Catch::Contains("RD_CMDSTREAM_ADDR"));
}

TEST_CASE("a truncated payload in a gzip file names the section's offset") {
    TempDir dir;
    Bytes b = small_capture();
    b.resize(b.size() - 5);
    auto c = load_bytes(dir, gzip(b), "t.rd.gz");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::TruncatedPayload);
    CHECK(c.error().offset == 143);
}

TEST_CASE("a gzip file cut short mid-stream is an error, not a silent short capture") {
    TempDir dir;
    Bytes big;
    section(big, SectType::gpu_id, words({630}));
    section(big, SectType::gpuaddr, words({0x1000, 200000, 0}));
    section(big, SectType::buffer_contents, filled(200000, 3));
    section(big, SectType::cmdstream_addr, words({0x1000, 4, 0}));
    Bytes z = gzip(big);
    z.resize(z.size() / 2);
    auto c = load_bytes(dir, z, "cut.rd.gz");
    REQUIRE_FALSE(c.ok());
    const bool truncation_or_gzip =
        c.error().code == RdErrc::TruncatedPayload || c.error().code == RdErrc::GzipError;
    CHECK(truncation_or_gzip);
    CHECK(c.error().offset <= big.size());
}

TEST_CASE("a negative size is a negative_size error at the header") {
    TempDir dir;
    Bytes b = small_capture();
    const uint64_t at = b.size();
    raw_section(b, 3, 0xfffffff0u, {});
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::NegativeSize);
    CHECK(c.error().offset == at);
    CHECK_THAT(c.error().what(), Catch::Contains("-16"));
}

TEST_CASE("a size beyond the end of a plain file is refused before any allocation") {
    TempDir dir;
    Bytes b = small_capture();
    const uint64_t at = b.size();
    raw_section(b, 12, 0x3fff0000u, filled(10, 0));   // claims ~1 GiB, has 10 bytes
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::TruncatedPayload);
    CHECK(c.error().offset == at);
}

TEST_CASE("a size above the 1 GiB section limit is an oversized_section error") {
    TempDir dir;
    Bytes b;
    raw_section(b, 12, 0x7ffffff0u, filled(16, 0));
    auto c = load_bytes(dir, gzip(b), "huge.rd.gz");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::OversizedSection);
    CHECK(c.error().offset == 0);
}

TEST_CASE("a huge size under the limit in a short gzip stream ends as truncated_payload") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpuaddr, words({0x1000, 0x3ff00000u, 0}));
    raw_section(b, 12, 0x3ff00000u, filled(100, 0));   // gzip: size of the rest is unknown
    auto c = load_bytes(dir, gzip(b), "short.rd.gz");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::TruncatedPayload);
    CHECK(c.error().offset == 20);
    CHECK_THAT(c.error().what(), Catch::Contains("ends after 100"));
}

TEST_CASE("gzip magic followed by garbage is a gzip_error") {
    TempDir dir;
    Bytes b = {0x1f, 0x8b, 0x08, 0x00};
    Bytes junk = filled(200, 0x55);
    b.insert(b.end(), junk.begin(), junk.end());
    auto c = load_bytes(dir, b, "junk.rd.gz");
    REQUIRE_FALSE(c.ok());
    const bool named = c.error().code == RdErrc::GzipError || c.error().code == RdErrc::EmptyFile ||
                       c.error().code == RdErrc::TruncatedHeader;
    CHECK(named);
    CHECK(c.error().offset == 0);
    INFO(c.error().what());
}

TEST_CASE("a missing file is an open_failed error naming the path") {
    auto c = load_capture("/nonexistent/dir/x.rd");
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::OpenFailed);
    CHECK_THAT(c.error().what(), Catch::Contains("/nonexistent/dir/x.rd"));
}

TEST_CASE("buffer contents without a preceding GPUADDR is an orphan_contents error") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpu_id, words({630}));
    section(b, SectType::buffer_contents, filled(8, 0));
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::OrphanContents);
    CHECK(c.error().offset == 12);
}

TEST_CASE("buffer contents larger than the declared buffer is a contents_overflow error") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpuaddr, words({0x1000, 8, 0}));
    section(b, SectType::buffer_contents, filled(9, 0));
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::ContentsOverflow);
    CHECK(c.error().offset == 20);
}

TEST_CASE("address payloads of the wrong size are a bad_payload error") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpuaddr, words({0x1000}));
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::BadPayload);
    CHECK_THAT(c.error().what(), Catch::Contains("RD_GPUADDR"));
}

TEST_CASE("a chip id that is not 8 bytes is a bad_payload error") {
    TempDir dir;
    Bytes b;
    section(b, SectType::chip_id, words({0x06030001}));
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::BadPayload);
}

TEST_CASE("an empty RD_CMD section is an empty process name (fuzz_rd finding)") {
    // An empty payload has no data pointer; the NUL search once handed that to memchr (UBSan).
    TempDir dir;
    Bytes b;
    section(b, SectType::cmd, {});
    section(b, SectType::gpuaddr, words({0x1000, 0x100, 0}));
    section(b, SectType::cmdstream_addr, words({0x1000, 0x10, 0}));
    auto c = load_bytes(dir, b);
    REQUIRE(c.ok());
    REQUIRE(c.value().submits.size() == 1);
    CHECK(c.value().submits[0].cmd.empty());
}

TEST_CASE("a buffer that wraps the address space is a bad_payload error") {
    TempDir dir;
    Bytes b;
    section(b, SectType::gpuaddr, words({0xfffff000u, 0x2000, 0xffffffffu}));
    auto c = load_bytes(dir, b);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == RdErrc::BadPayload);
}

TEST_CASE("cutting a valid file at any byte gives either a clean prefix or an error at or before the cut") {
    TempDir dir;
    const Bytes full = small_capture();
    const std::vector<uint64_t> boundaries = {0, 12, 28, 51, 71, 143, 163};
    for (size_t cut = 0; cut < full.size(); ++cut) {
        Bytes b(full.begin(), full.begin() + static_cast<long>(cut));
        for (const char* name : {"cut.rd", "cut.rd.gz"}) {
            auto c = load_bytes(dir, std::string(name).ends_with(".gz") ? gzip(b) : b, name);
            const bool at_boundary =
                cut > 0 && std::find(boundaries.begin(), boundaries.end(), cut) != boundaries.end();
            INFO("cut " << cut << " " << name);
            CHECK(c.ok() == at_boundary);
            if (!c.ok()) CHECK(c.error().offset <= cut);
        }
    }
}

TEST_CASE("randomly corrupted files load or fail with an offset inside the stream, never crash") {
    TempDir dir;
    const Bytes good = small_capture();
    std::mt19937 rng(20261126);
    for (int iter = 0; iter < 400; ++iter) {
        Bytes b = good;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
        if (rng() % 4 == 0) b.resize(rng() % b.size());
        const bool gz = rng() % 2;
        auto c = load_bytes(dir, gz ? gzip(b) : b, gz ? "f.rd.gz" : "f.rd");
        INFO("iteration " << iter);
        if (!c.ok()) {
            CHECK(c.error().offset <= b.size());
            CHECK_FALSE(c.error().what().empty());
        } else {
            CHECK(c.value().bytes.size() <= b.size());
        }
    }
}

TEST_CASE("read_payload appends to the caller's store and skipped payloads cost nothing") {
    TempDir dir;
    write_file(dir.file("a.rd"), small_capture());
    auto r = RdReader::open(dir.file("a.rd"));
    REQUIRE(r.ok());
    RdReader& rd = r.value();
    Bytes store = {0xaa};
    SectionHeader h;
    while (rd.next_header(h) == RdReader::Next::Section)
        if (h.type == static_cast<uint32_t>(SectType::buffer_contents)) REQUIRE(rd.read_payload(store));
    REQUIRE_FALSE(rd.failed());
    REQUIRE(store.size() == 65);
    CHECK(store[0] == 0xaa);
    CHECK(Bytes(store.begin() + 1, store.end()) == filled(64, 1));
    CHECK(rd.offset() == small_capture().size());
}
