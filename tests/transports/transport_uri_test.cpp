// open_transport / parse_transport_uri: the URI spellings of the three transports.
#include <catch2/catch.hpp>

#include "host_sim/inproc_host.h"
#include "host_sim/msm_renderer.h"
#include "hostsim_process.h"
#include "transports/transport_uri.h"
#include "virtio_proto/vtest_wire.h"

using namespace fdnc;

TEST_CASE("transport URIs parse into kind and path", "[uri]") {
    std::string err;
    auto v = parse_transport_uri("vtest:/run/x.sock", &err);
    REQUIRE(v);
    CHECK(v->kind == TransportKind::Vtest);
    CHECK(v->path == "/run/x.sock");
    auto d = parse_transport_uri("virtgpu", &err);
    REQUIRE(d);
    CHECK(d->kind == TransportKind::Virtgpu);
    CHECK(d->path.empty());
    auto i = parse_transport_uri("inproc:rtt_us=200,va_size=1G", &err);
    REQUIRE(i);
    CHECK(i->kind == TransportKind::Inproc);
    CHECK(i->inproc.rtt_us == 200);
    CHECK(i->inproc.va_size == (1ull << 30));
    auto e = parse_transport_uri("", &err);
    REQUIRE(e);
    CHECK(e->kind == TransportKind::Inproc);
}

TEST_CASE("transport URIs with an unknown scheme or a bad inproc key are refused with a reason", "[uri]") {
    std::string err;
    CHECK_FALSE(parse_transport_uri("vtestx:/a", &err));
    CHECK_THAT(err, Catch::Contains("unknown transport"));
    CHECK_FALSE(parse_transport_uri("inproc:bogus=1", &err));
    CHECK_THAT(err, Catch::Contains("bogus"));
}

TEST_CASE("open_transport reaches fdnc-hostsim through a vtest URI", "[uri][vtest]") {
    test::HostsimProcess hs;
    REQUIRE(hs.ok());
    std::string err;
    auto t = open_transport("vtest:" + hs.socket_path(), &err);
    INFO(err);
    REQUIRE(t);
    CHECK(t->info().name == "vtest");
    CHECK(t->info().detail == hs.socket_path());
}

TEST_CASE("open_transport needs an in-process host for inproc and uses the one given", "[uri]") {
    std::string err;
    const InprocHostFactory registered = registered_inproc_host(); // this binary links host_sim's
    register_inproc_host({});
    CHECK_FALSE(open_transport("inproc", &err));
    CHECK_THAT(err, Catch::Contains("host_sim"));
    register_inproc_host(registered);
    auto t = open_transport("inproc:gpu_id=650", &err, [](const InprocConfig& cfg, std::string*) {
        return std::make_unique<InprocTransport>(host::make_inproc_msm_host(cfg));
    });
    REQUIRE(t);
    CHECK(t->info().name == "inproc");
}

TEST_CASE("the default vtest socket follows VTEST_SOCKET_NAME", "[uri]") {
    ::setenv(vtest::kSocketEnv, "/tmp/fdnc-env.sock", 1);
    CHECK(vtest::default_socket_path() == "/tmp/fdnc-env.sock");
    ::unsetenv(vtest::kSocketEnv);
    CHECK(vtest::default_socket_path() == "/tmp/.virgl_test");
}
