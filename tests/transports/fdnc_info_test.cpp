// fdnc-info as a process: its --json output parses and has the documented schema; exit status
// says whether a native context is usable.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "hostsim_process.h"

using fdnc::test::HostsimProcess;
using nlohmann::json;

namespace {

struct Run {
    int status = -1;
    std::string out;
};

Run run_info(const std::string& args) {
    Run r;
    const std::string cmd = fdnc::test::info_binary() + " " + args + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

void check_schema(const json& j) {
    REQUIRE(j.is_object());
    CHECK(j.at("uri").is_string());
    CHECK(j.at("usable").is_boolean());
    CHECK((j.at("error").is_null() || j.at("error").is_string()));
    CHECK((j.at("transport").is_null() || j.at("transport").is_object()));
    CHECK((j.at("capset").is_null() || j.at("capset").is_object()));
    CHECK(j.at("rings").is_number_unsigned());
    REQUIRE(j.at("checks").is_array());
    for (const auto& c : j.at("checks")) {
        CHECK(c.at("name").is_string());
        CHECK(c.at("ok").is_boolean());
        CHECK(c.at("detail").is_string());
    }
}

} // namespace

TEST_CASE("fdnc-info --json over fdnc-hostsim reports a usable context with the host's ids", "[info]") {
    HostsimProcess hs({"--gpu-id", "660", "--chip-id", "0x06060001"});
    REQUIRE(hs.ok());
    const Run r = run_info("vtest:" + hs.socket_path() + " --json");
    CHECK(r.status == 0);
    const json j = json::parse(r.out);
    check_schema(j);
    CHECK(j["usable"] == true);
    CHECK(j["transport"]["name"] == "vtest");
    CHECK(j["transport"]["vtest_protocol"] == 4);
    const json& caps = j["capset"];
    CHECK(caps["context_type_name"] == "msm");
    CHECK(caps["msm"]["gpu_id"] == 660);
    CHECK(caps["msm"]["chip_id"] == 0x06060001);
    CHECK(caps["msm"]["va_size"].get<uint64_t>() > 0);
    CHECK(j["rings"].get<uint32_t>() == caps["msm"]["priorities"].get<uint32_t>() + 1);
    for (const auto& c : j["checks"]) CHECK(c["ok"] == true);
}

TEST_CASE("fdnc-info without a server exits 2 and says why in the JSON", "[info]") {
    const Run r = run_info("vtest:/tmp/fdnc-no-such-dir/sock --json");
    CHECK(r.status == 2);
    const json j = json::parse(r.out);
    check_schema(j);
    CHECK(j["usable"] == false);
    CHECK(j["capset"].is_null());
    CHECK_THAT(j["error"].get<std::string>(), Catch::Contains("no vtest server"));
}

TEST_CASE("fdnc-info rejects an unknown transport with exit status 2", "[info]") {
    const Run r = run_info("floppy:/dev/fd0");
    CHECK(r.status == 2);
    CHECK_THAT(r.out, Catch::Contains("unknown transport"));
}
