// Real captures through the replayer (original addresses and heap placement) and the --record
// round trip.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "capi/open_device.h"
#include "replay/capture_loader.h"
#include "replay/rd_writer.h"
#include "replay/replayer.h"
#include "replay/workloads.h"
#include "trace_files.h"

using namespace fdnc;
using namespace fdnc::replay;

namespace {

DeviceFactory factory_for(const Workload& w, uint32_t rtt_us = 20) {
    const std::string uri = default_inproc_uri(rtt_us, std::nullopt, w);
    return [uri](const DeviceOptions& o, std::string* e) { return open_device(uri, o, e); };
}

// Host mode's round trip: long enough that the guest's own work between sending a request and
// waiting for it (tens of µs, more under QEMU TCG) never covers it, so a wait really happens.
constexpr uint32_t kHostModeRttUs = 2000;

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("fdnc-replay-test-" + std::to_string(getpid()) + "-" + name))
        .string();
}

rd::Capture load(const std::string& path) {
    auto c = rd::load_capture(path);
    INFO(path << ": " << (c ? "" : c.error().what()));
    REQUIRE(c);
    return std::move(c.value());
}

// Replays w in guest mode recording into path.
ModeResult record(const Workload& w, const std::string& path) {
    auto wr = rd::RdWriter::create(path);
    REQUIRE(wr);
    ReplayOptions o;
    o.record = &wr.value();
    ModeResult r = run_mode(w, IovaMode::Guest, o, factory_for(w));
    REQUIRE(wr.value().close());
    return r;
}

} // namespace

TEST_CASE("Every shared capture replays at its original addresses with no fault", "[replay][captures]") {
    for (const std::string& path : rd::test::trace_files()) {
        INFO(path);
        const rd::Capture c = load(path);
        const Workload w = from_capture(c, path, IovaPlacement::Original);
        ReplayOptions o;
        o.ranges = true;
        const ModeResult r = run_mode(w, IovaMode::Guest, o, factory_for(w));
        INFO(r.error);
        CHECK(r.clean());
        CHECK(r.stats.faults == 0);
        CHECK(r.submits == c.submits.size());
        CHECK(r.bos == c.lifetimes.size());
        // Each buffer really is at the capture's address.
        std::set<std::pair<uint64_t, uint64_t>> want, got;
        for (const rd::BufferLifetime& l : c.lifetimes) want.insert({l.iova, l.size});
        for (const BoRange& b : r.ranges) got.insert({b.iova, b.size});
        CHECK(got == want);
    }
}

TEST_CASE("Every shared capture replays with heap-chosen addresses with no fault", "[replay][captures]") {
    for (const std::string& path : rd::test::trace_files()) {
        INFO(path);
        const rd::Capture c = load(path);
        const Workload w = from_capture(c, path, IovaPlacement::Heap);
        CHECK_FALSE(w.original_addresses);
        const ModeResult r = run_mode(w, IovaMode::Guest, ReplayOptions{}, factory_for(w));
        INFO(r.error);
        CHECK(r.clean());
        CHECK(r.bo_new_host_waits == 0);
        CHECK(r.submits == c.submits.size());
    }
}

TEST_CASE("Every shared capture replays in host mode with no fault", "[replay][captures]") {
    for (const std::string& path : rd::test::trace_files()) {
        INFO(path);
        const rd::Capture c = load(path);
        const Workload w = from_capture(c, path, IovaPlacement::Original);
        const ModeResult r = run_mode(w, IovaMode::Host, ReplayOptions{}, factory_for(w, kHostModeRttUs));
        INFO(r.error);
        CHECK(r.clean());
        // One round trip per new buffer (at least the injected round trip each); blocks are
        // measured (see the synthetic host-mode case for why a few may not be).
        REQUIRE(r.bo_new_ns.size() == r.bos);
        CHECK(*std::min_element(r.bo_new_ns.begin(), r.bo_new_ns.end()) >= kHostModeRttUs * 1000);
        CHECK(r.bo_new_host_waits <= r.bos);
        CHECK(r.bo_new_host_waits > 0);
    }
}

TEST_CASE("A capture's stream keeps its submits, buffers, uploads and cmdstreams", "[replay][captures]") {
    const rd::Capture c = load(rd::test::trace_files().front());
    const Workload w = from_capture(c, "x", IovaPlacement::Original);
    CHECK(w.count(EventKind::Submit) == c.submits.size());
    CHECK(w.count(EventKind::Alloc) == c.lifetimes.size());
    uint64_t uploads = 0, cmds = 0;
    for (const rd::Submit& s : c.submits) {
        for (const rd::SubmitBuffer& b : s.buffers) uploads += b.uploads.size();
        for (const rd::CmdStream& cs : s.cmds) cmds += cs.size_bytes != 0;
    }
    CHECK(w.count(EventKind::Write) == uploads);
    uint64_t got_cmds = 0;
    for (const Event& e : w.streams[0].events) got_cmds += e.cmds.size();
    CHECK(got_cmds == cmds);
}

TEST_CASE("A recorded synthetic run reads back and re-records identically", "[replay][record]") {
    std::string err;
    auto w = make_workload("gl-frames", WorkloadParams{6, 1, 9}, &err);
    REQUIRE(w);
    const std::string a = temp_path("a.rd.gz"), b = temp_path("b.rd");
    const ModeResult ra = record(*w, a);
    REQUIRE(ra.clean());
    const rd::Capture ca = load(a);
    CHECK(ca.submits.size() == ra.submits);
    CHECK(ca.lifetimes.size() >= 1);
    // Replaying the recording at its own addresses and recording again changes nothing.
    const ModeResult rb = record(from_capture(ca, "a", IovaPlacement::Original), b);
    REQUIRE(rb.clean());
    const rd::Capture cb = load(b);
    CHECK(rd::capture_diff(ca, cb) == "");
    std::filesystem::remove(a);
    std::filesystem::remove(b);
}

TEST_CASE("Recording a shared capture reproduces its submits and buffers", "[replay][record]") {
    for (const std::string& path : rd::test::trace_files()) {
        INFO(path);
        const rd::Capture c = load(path);
        const std::string out = temp_path("rec.rd");
        REQUIRE(record(from_capture(c, path, IovaPlacement::Original), out).clean());
        const rd::Capture r = load(out);
        std::filesystem::remove(out);
        CHECK(r.gpu_id == c.gpu_id);
        REQUIRE(r.submits.size() == c.submits.size());
        for (size_t s = 0; s < c.submits.size(); s++) {
            INFO("submit " << s);
            REQUIRE(r.submits[s].buffers.size() == c.submits[s].buffers.size());
            for (size_t i = 0; i < c.submits[s].buffers.size(); i++) {
                CHECK(r.submits[s].buffers[i].iova == c.submits[s].buffers[i].iova);
                CHECK(r.submits[s].buffers[i].size == c.submits[s].buffers[i].size);
            }
            std::vector<std::pair<uint64_t, uint32_t>> want, got;
            for (const rd::CmdStream& cs : c.submits[s].cmds)
                if (cs.size_bytes) want.push_back({cs.iova, cs.size_bytes});
            for (const rd::CmdStream& cs : r.submits[s].cmds) got.push_back({cs.iova, cs.size_bytes});
            CHECK(got == want);
            CHECK(r.submits[s].cmd == c.submits[s].cmd);
        }
    }
}

TEST_CASE("A capture outside the host's VA range is named as a misfit with both ranges", "[replay][captures]") {
    Workload w;
    w.original_addresses = true;
    w.va_min = 0x1030a000;
    w.va_end = 0x11271000;
    // The real host's range: the 32-bit capture lies below it.
    const std::string why = original_placement_misfit(w, 0x100000000, 0x100000000);
    CHECK_THAT(why, Catch::Contains("[0x1030a000, 0x11271000)"));
    CHECK_THAT(why, Catch::Contains("[0x100000000, 0x200000000)"));
    // Straddling the end is a misfit too; inside, or heap placement, is not.
    CHECK_FALSE(original_placement_misfit(w, 0x10000000, 0x1000000).empty());
    CHECK(original_placement_misfit(w, 0x1000000, 0x20000000).empty());
    w.original_addresses = false;
    CHECK(original_placement_misfit(w, 0x100000000, 0x100000000).empty());
}
