// Outputs of a replay: the text table, JSON summary schema, Chrome trace JSON, SVG well-formedness.
#include <catch2/catch.hpp>

#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "capi/open_device.h"
#include "replay/replayer.h"
#include "replay/report.h"
#include "replay/report_json.h"
#include "replay/workloads.h"

using namespace fdnc;
using namespace fdnc::replay;
using nlohmann::json;

namespace {

struct Run {
    RunInfo info;
    std::vector<ModeResult> modes;
};

// One small gl-frames run in both modes with every recording on.
const Run& both_modes() {
    static const Run run = [] {
        Run r;
        std::string err;
        auto w = make_workload("gl-frames", WorkloadParams{8, 1, 3}, &err);
        REQUIRE(w);
        r.info.workload = w->name;
        r.info.source = "synthetic";
        r.info.transport = "inproc:rtt_us=20";
        r.info.placement = "heap";
        ReplayOptions o;
        o.trace = true;
        o.ranges = true;
        const DeviceFactory f = [](const DeviceOptions& d, std::string* e) {
            return open_device("inproc:rtt_us=20", d, e);
        };
        r.modes.push_back(run_mode(*w, IovaMode::Guest, o, f));
        r.modes.push_back(run_mode(*w, IovaMode::Host, o, f));
        return r;
    }();
    return run;
}

// A small well-formedness checker: balanced tags, quoted attributes, known entities, no stray
// '<' or '&' in text. Returns "" or the first problem.
std::string xml_problem(const std::string& s) {
    std::vector<std::string> stack;
    size_t i = 0;
    auto entity_ok = [&](size_t at) {
        for (const char* e : {"&lt;", "&gt;", "&amp;", "&quot;", "&apos;"})
            if (s.compare(at, std::strlen(e), e) == 0) return true;
        return false;
    };
    while (i < s.size()) {
        if (s[i] == '&' && !entity_ok(i)) return "bad entity at " + std::to_string(i);
        if (s[i] != '<') {
            if (s[i] == '>') return "stray '>' at " + std::to_string(i);
            i++;
            continue;
        }
        const size_t end = s.find('>', i);
        if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
        std::string tag = s.substr(i + 1, end - i - 1);
        i = end + 1;
        if (tag.starts_with("?")) continue;
        if (tag.starts_with("/")) {
            if (stack.empty() || stack.back() != tag.substr(1)) return "mismatched </" + tag.substr(1) + ">";
            stack.pop_back();
            continue;
        }
        const bool self = tag.ends_with("/");
        if (self) tag.pop_back();
        const size_t sp = tag.find_first_of(" \n\t");
        const std::string name = tag.substr(0, sp);
        if (name.empty() || tag.find('<') != std::string::npos) return "bad tag '" + tag + "'";
        // attributes: name="value" pairs
        size_t q = 0;
        for (char c : tag) q += c == '"';
        if (q % 2) return "unbalanced quotes in <" + name + ">";
        if (!self) stack.push_back(name);
    }
    if (!stack.empty()) return "unclosed <" + stack.back() + ">";
    return "";
}

} // namespace

TEST_CASE("The JSON summary has the issue's schema for both modes", "[replay][outputs]") {
    const Run& r = both_modes();
    const json j = json::parse(summary_json(r.info, r.modes));
    CHECK(j.at("workload") == "gl-frames");
    CHECK(j.at("transport") == "inproc:rtt_us=20");
    for (const char* m : {"guest", "host"}) {
        INFO(m);
        const json& x = j.at("modes").at(m);
        for (const char* k : {"bos", "submits", "host_waits", "faults", "async_errors", "ccmds", "bytes_sent"})
            CHECK(x.at(k).is_number_unsigned());
        CHECK(x.at("wall_ms").is_number());
        for (const char* k : {"p50", "p99", "max"}) CHECK(x.at("bo_new_us").at(k).is_number());
        CHECK(x.at("va").at("peak_bytes").is_number());
        CHECK(x.at("va").at("largest_free_bytes").is_number());
    }
    CHECK(j.at("modes").at("guest").at("bos") == j.at("modes").at("host").at("bos"));
    CHECK(j.at("ratios").at("frame_time_guest_over_host").is_number());
    CHECK(j.at("clean") == true);
}

TEST_CASE("The trace is Chrome trace-event JSON with spans and counter tracks", "[replay][outputs]") {
    const Run& r = both_modes();
    const json j = json::parse(trace_json(r.info, r.modes));
    const json& ev = j.at("traceEvents");
    REQUIRE(ev.is_array());
    std::set<std::string> spans, counters;
    std::set<int> pids;
    for (const json& e : ev) {
        const std::string ph = e.at("ph");
        if (ph == "X") {
            spans.insert(e.at("name").get<std::string>());
            CHECK(e.at("dur").get<double>() >= 0);
            pids.insert(e.at("pid").get<int>());
        } else if (ph == "C") {
            counters.insert(e.at("name").get<std::string>());
        }
    }
    for (const char* s : {"bo_new", "flush", "submit", "host_wait", "frame"}) CHECK(spans.count(s));
    CHECK(counters.count("VA use (MiB)"));
    CHECK(counters.count("in-flight submits"));
    CHECK(pids.size() == 2);
}

TEST_CASE("The SVG is well-formed XML with a panel per mode and the histogram", "[replay][outputs]") {
    const Run& r = both_modes();
    const std::string svg = render_svg(r.info, r.modes);
    CHECK(xml_problem(svg) == "");
    CHECK(svg.find("guest mode: address space") != std::string::npos);
    CHECK(svg.find("host mode: address space") != std::string::npos);
    CHECK(svg.find("bo_new latency histogram") != std::string::npos);
}

TEST_CASE("The XML checker rejects broken markup", "[replay][outputs]") {
    CHECK(xml_problem("<svg><rect x=\"1\"/></svg>") == "");
    CHECK(xml_problem("<svg><rect x=\"1\"></svg>") != "");
    CHECK(xml_problem("<svg><text>a & b</text></svg>") != "");
    CHECK(xml_problem("<svg><text x=\"1>a</text></svg>") != "");
}

TEST_CASE("Names with markup characters are escaped in the SVG", "[replay][outputs]") {
    Run r = both_modes();
    r.info.workload = "a<b>&\"c\"";
    CHECK(xml_problem(render_svg(r.info, r.modes)) == "");
}

TEST_CASE("The table shows both modes and their ratio", "[replay][outputs]") {
    const Run& r = both_modes();
    const std::string t = format_table(r.info, r.modes);
    CHECK(t.find("guest") != std::string::npos);
    CHECK(t.find("host/guest") != std::string::npos);
    CHECK(t.find("bo_new p99") != std::string::npos);
    CHECK(format_problems(r.modes) == "");
}

TEST_CASE("Address ranges over time are recorded for every buffer", "[replay][outputs]") {
    const Run& r = both_modes();
    const ModeResult& g = r.modes[0];
    CHECK(g.ranges.size() == g.bos);
    for (const BoRange& b : g.ranges) {
        CHECK(b.t_free_ns >= b.t_alloc_ns);
        if (b.t_release_ns >= 0) CHECK(b.t_release_ns >= b.t_free_ns);
    }
}
