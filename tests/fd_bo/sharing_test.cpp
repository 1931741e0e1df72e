// dma-buf export/import between contexts of one host, and dedup on re-import (I1).
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fd_bo_fixture.h"
#include "host_sim/msm_renderer.h"

using namespace fdnc;
using namespace fdnc::test;

namespace {
std::unique_ptr<Device> device_on(Host& host) {
    std::string err;
    auto dev = Device::open(make_inproc(host), DeviceOptions{}, &err);
    INFO(err);
    REQUIRE(dev);
    return dev;
}
} // namespace

TEST_CASE("a shared bo exported by one context is imported by another at its own iova", "[fd_bo]") {
    auto host = make_msm_host();
    auto a = device_on(*host);
    auto b = device_on(*host);
    BoRef src = new_bo(*a, 65536, kBoShared, "shared");
    auto* p = static_cast<uint8_t*>(src->map());
    REQUIRE(p);
    std::memset(p, 0x5a, 65536);
    const int fd = src->export_dmabuf();
    REQUIRE(fd >= 0);
    int err = 0;
    Bo* imp = b->bo_import(fd, &err);
    INFO("import err " << err);
    REQUIRE(imp);
    CHECK(imp->size() == 65536);
    CHECK(imp->iova() >= b->va_range_start());
    auto* q = static_cast<uint8_t*>(imp->map(&err));
    REQUIRE(q);
    CHECK(q[0] == 0x5a);
    CHECK(q[65535] == 0x5a);
    // The importer can use it in a submit: SET_IOVA went ahead of it, so the GPU finds it mapped.
    Pipe* pipe = b->pipe_new(0, &err);
    REQUIRE(pipe);
    BoRef cmd = new_bo(*b, 4096);
    const uint32_t f = submit_with(*pipe, *cmd, {imp});
    REQUIRE(pipe->wait(f, 5'000'000'000) == 0);
    CHECK(b->stats().faults == 0);
    CHECK(b->stats().async_errors == 0);
    delete pipe;
    imp->unref();
    close(fd);
}

TEST_CASE("importing the same dma-buf twice gives the same bo", "[fd_bo]") {
    auto host = make_msm_host();
    auto a = device_on(*host);
    auto b = device_on(*host);
    BoRef src = new_bo(*a, 8192, kBoShared);
    const int fd = src->export_dmabuf();
    REQUIRE(fd >= 0);
    int err = 0;
    Bo* one = b->bo_import(fd, &err);
    REQUIRE(one);
    Bo* two = b->bo_import(fd, &err);
    REQUIRE(two);
    CHECK(one == two);
    CHECK(b->stats().bos_live == 1);
    one->unref();
    two->unref();
    CHECK(b->stats().bos_live == 0);
    close(fd);
}

TEST_CASE("importing a bad fd fails cleanly", "[fd_bo]") {
    auto dev = open_test_device("inproc");
    int err = 0;
    CHECK(dev->bo_import(-1, &err) == nullptr);
    CHECK(err < 0);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    CHECK(dev->bo_import(pipefd[0], &err) == nullptr);
    CHECK(err < 0);
    close(pipefd[0]);
    close(pipefd[1]);
}
