// Every real capture in the shared traces directory: parses, is self-consistent, round-trips.
// Loaded with the default 4 KiB allocation alignment (LoadOptions).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>

#include "replay/capture_loader.h"
#include "replay/rd_writer.h"
#include "rd_test_util.h"
#include "trace_files.h"

using namespace fdnc::rd;
using namespace fdnc::rd::test;

namespace {

const Capture& loaded(const std::string& path) {
    static std::map<std::string, Capture> cache;
    auto it = cache.find(path);
    if (it == cache.end()) {
        auto r = load_capture(path);
        if (!r) FAIL(path << ": " << r.error().what());
        it = cache.emplace(path, std::move(r).value()).first;
    }
    return it->second;
}

std::string base(const std::string& p) { return std::filesystem::path(p).filename().string(); }

} // namespace

TEST_CASE("every shared capture parses with a sane gpu id and at least one submit") {
    const auto files = trace_files();
    for (const std::string& f : files) {
        const Capture& c = loaded(f);
        const CaptureStats st = c.stats();
        INFO(base(f));
        // Adreno ids are 3 digits (a2xx..a7xx); Mesa-written captures may carry only a chip id,
        // which is then non-zero. Kernel captures carry RD_GPU_ID.
        CHECK((c.gpu_id != 0 || c.chip_id.has_value()));
        if (c.gpu_id != 0) {
            CHECK(c.gpu_id >= 200);
            CHECK(c.gpu_id < 1000);
        }
        if (c.chip_id) CHECK(*c.chip_id != 0);
        CHECK(st.submits > 0);
        CHECK(st.buffers > 0);
        CHECK_FALSE(c.processes.empty());
        WARN(base(f) << ": gpu_id " << c.gpu_id << " chip_id "
                     << (c.chip_id ? std::to_string(*c.chip_id) : std::string("none")) << " submits "
                     << st.submits << " cmdstreams " << st.cmdstreams << " buffers " << st.buffers
                     << " identities " << st.identities << " content_bytes " << st.content_bytes
                     << " max_live " << st.max_live_buffers << " skipped " << st.skipped_sections);
    }
}

TEST_CASE("every cmdstream of every shared capture lies inside a buffer of its submit") {
    for (const std::string& f : trace_files()) {
        const Capture& c = loaded(f);
        INFO(base(f));
        uint64_t implicit = 0;
        for (const Submit& s : c.submits)
            for (const SubmitBuffer& b : s.buffers) implicit += b.implicit;
        // Undeclared cmdstreams are a real-capture fact (old kernel msm_rd), reported here.
        if (c.anomalies.cmds_outside_buffers)
            WARN(base(f) << ": " << c.anomalies.cmds_outside_buffers
                         << " cmdstream(s) outside every declared buffer -> " << implicit
                         << " implicit buffer(s)");
        CHECK(implicit <= c.anomalies.cmds_outside_buffers);
        for (const Submit& s : c.submits)
            for (const CmdStream& cs : s.cmds) {
                REQUIRE(cs.buffer < s.buffers.size());
                const SubmitBuffer& b = s.buffers[cs.buffer];
                CHECK(cs.iova >= b.iova);
                CHECK(cs.iova + cs.size_bytes <= b.iova + b.size);
                CHECK(b.has_cmdstream);
            }
    }
}

TEST_CASE("per-submit buffers of every shared capture are sorted, disjoint and hold their uploads") {
    for (const std::string& f : trace_files()) {
        const Capture& c = loaded(f);
        INFO(base(f));
        for (const Submit& s : c.submits) {
            for (size_t i = 0; i < s.buffers.size(); ++i) {
                const SubmitBuffer& b = s.buffers[i];
                CHECK(b.iova % kPageBytes == 0);   // load_capture's default alignment
                CHECK(b.size % kPageBytes == 0);
                if (i) CHECK(s.buffers[i - 1].iova + s.buffers[i - 1].size <= b.iova);
                for (const Upload& u : b.uploads) {
                    CHECK(u.offset_in_buffer + u.data.size <= b.size);
                    CHECK(u.data.offset + u.data.size <= c.bytes.size());
                }
            }
        }
    }
}

TEST_CASE("buffer lifetimes of every shared capture are consistent with the submits") {
    for (const std::string& f : trace_files()) {
        const Capture& c = loaded(f);
        INFO(base(f));
        std::vector<uint32_t> seen(c.lifetimes.size(), 0);
        for (uint32_t si = 0; si < c.submits.size(); ++si)
            for (const SubmitBuffer& b : c.submits[si].buffers) {
                REQUIRE(b.lifetime < c.lifetimes.size());
                const BufferLifetime& l = c.lifetimes[b.lifetime];
                CHECK(l.iova == b.iova);
                CHECK(l.size == b.size);
                CHECK(l.first_submit <= si);
                CHECK(si <= l.last_submit);
                ++seen[b.lifetime];
            }
        for (size_t i = 0; i < c.lifetimes.size(); ++i) CHECK(seen[i] == c.lifetimes[i].uses);
        // Lifetimes that share addresses never share submits: each can sit at its own iova.
        std::vector<size_t> idx(c.lifetimes.size());
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return c.lifetimes[a].iova < c.lifetimes[b].iova; });
        size_t clashes = 0;
        for (size_t i = 0; i < idx.size(); ++i)
            for (size_t j = i + 1; j < idx.size(); ++j) {
                const BufferLifetime& a = c.lifetimes[idx[i]];
                const BufferLifetime& b = c.lifetimes[idx[j]];
                if (b.iova >= a.iova + a.size) break;
                if (a.first_submit <= b.last_submit && b.first_submit <= a.last_submit) ++clashes;
            }
        CHECK(clashes == 0);
    }
}

TEST_CASE("exact-range loading of every shared capture keeps every decl as its own range or merges only overlaps") {
    for (const std::string& f : trace_files()) {
        auto r = load_capture(f, LoadOptions{1});
        REQUIRE(r.ok());
        const Capture& c = r.value();
        INFO(base(f));
        CHECK(capture_diff(c, loaded(f)) == "");   // same stream, only the allocation view differs
        for (const Submit& s : c.submits)
            for (size_t i = 1; i < s.buffers.size(); ++i)
                CHECK(s.buffers[i - 1].iova + s.buffers[i - 1].size <= s.buffers[i].iova);
        WARN(base(f) << " exact ranges: buffers " << c.stats().buffers << " identities "
                     << c.stats().identities << " max_live " << c.stats().max_live_buffers
                     << " merged decls " << c.anomalies.merged_decls);
    }
}

TEST_CASE("every shared capture round-trips through the writer as .rd and as .rd.gz") {
    TempDir dir;
    for (const std::string& f : trace_files()) {
        const Capture& c = loaded(f);
        for (const char* ext : {".rd", ".rd.gz"}) {
            const std::string out = dir.file("rt" + std::string(ext));
            INFO(base(f) << " -> " << ext);
            auto w = write_capture(out, c);
            REQUIRE(w.ok());
            auto r = load_capture(out);
            REQUIRE(r.ok());
            CHECK(capture_diff(c, r.value()) == "");
            CHECK(r.value().stats().buffers == c.stats().buffers);
            CHECK(r.value().stats().content_bytes == c.stats().content_bytes);
        }
    }
}

TEST_CASE("a missing traces directory is a loud failure, not a skip") {
    const char* old = std::getenv("FDNC_TRACES_DIR");
    const std::string saved = old ? old : "";
    ::setenv("FDNC_TRACES_DIR", "/nonexistent/fdnc-traces", 1);
    CHECK_THROWS_WITH(trace_files(), Catch::Contains("traces directory missing"));
    ::unsetenv("FDNC_TRACES_DIR");
    CHECK_THROWS_WITH(trace_files(), Catch::Contains("not set"));
    if (old) ::setenv("FDNC_TRACES_DIR", saved.c_str(), 1);
}
