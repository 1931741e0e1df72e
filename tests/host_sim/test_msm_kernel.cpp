// MsmKernel: one test per kernel rule of PROTOCOL.md §1 and §2 (errnos, ordering, eras, faults).
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <ctime>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel_fixture.h"

using namespace fdnc::host;
using namespace fdnc::host::test;
using namespace fdnc::wire;

namespace {

KernelConfig era(KernelEra e) {
    KernelConfig c;
    c.era = e;
    return c;
}

drm_msm_param param(uint32_t id) { return {MSM_PIPE_3D0, id, 0, 0, 0}; }

} // namespace

TEST_CASE("GET_PARAM VA_START and VA_SIZE report the per-process range (1.1)") {
    KernelConfig cfg;
    cfg.va_start = 0x2'0000'0000ull;
    cfg.va_size = 0x4'0000'0000ull;
    KernelFixture t(cfg);
    auto p = param(MSM_PARAM_VA_START);
    REQUIRE(t.k.get_param(t.f, p) == 0);
    CHECK(p.value == 0x2'0000'0000ull);
    p = param(MSM_PARAM_VA_SIZE);
    REQUIRE(t.k.get_param(t.f, p) == 0);
    CHECK(p.value == 0x4'0000'0000ull);
}

TEST_CASE("GET_PARAM VA_START is -EINVAL on a file without a per-process address space (1.1)") {
    KernelFixture t;
    FileId g = t.k.open_file(false);
    auto p = param(MSM_PARAM_VA_START);
    CHECK(t.k.get_param(g, p) == -EINVAL);
    p = param(MSM_PARAM_VA_SIZE);
    CHECK(t.k.get_param(g, p) == -EINVAL);
}

TEST_CASE("GET_PARAM refuses len != 0, a pipe other than 3D0 and unknown params") {
    KernelFixture t;
    auto p = param(MSM_PARAM_GPU_ID);
    p.len = 4;
    CHECK(t.k.get_param(t.f, p) == -EINVAL);
    p = param(MSM_PARAM_GPU_ID);
    p.pipe = MSM_PIPE_2D0;
    CHECK(t.k.get_param(t.f, p) == -EINVAL);
    p = param(0x7f);
    CHECK(t.k.get_param(t.f, p) == -EINVAL);
    p = param(MSM_PARAM_GPU_ID);
    REQUIRE(t.k.get_param(t.f, p) == 0);
    CHECK(p.value == 630);
}

TEST_CASE("GEM_NEW rounds the size up to a page and accounts memory") {
    KernelFixture t;
    uint32_t h = t.bo(4097);
    uint64_t iova = 0;
    REQUIRE(t.get_iova(h, &iova) == 0);
    auto m = t.k.mappings(t.f);
    REQUIRE(m.size() == 1);
    CHECK(m[0].size == 8192);
    CHECK(t.k.memory_used() == 8192);
}

TEST_CASE("GEM_NEW refuses unknown flags and anything but exactly one valid cache mode") {
    KernelFixture t;
    auto try_flags = [&](uint32_t flags) {
        drm_msm_gem_new a{4096, flags, 0};
        return t.k.gem_new(t.f, a);
    };
    CHECK(try_flags(MSM_BO_WC | 0x100) == -EINVAL);
    CHECK(try_flags(0) == -EINVAL);
    CHECK(try_flags(MSM_BO_WC | MSM_BO_CACHED) == -EINVAL);
    CHECK(try_flags(MSM_BO_UNCACHED) == -EINVAL);
    CHECK(try_flags(MSM_BO_CACHED) == 0);
    CHECK(try_flags(MSM_BO_WC | MSM_BO_SCANOUT | MSM_BO_GPU_READONLY) == 0);
    CHECK(try_flags(MSM_BO_CACHED_COHERENT) == 0);
}

TEST_CASE("GEM_NEW with CACHED_COHERENT is -EINVAL on a GPU without I/O coherency") {
    KernelConfig cfg;
    cfg.gpu.has_cached_coherent = false;
    KernelFixture t(cfg);
    drm_msm_gem_new a{4096, MSM_BO_CACHED_COHERENT, 0};
    CHECK(t.k.gem_new(t.f, a) == -EINVAL);
}

TEST_CASE("GEM_NEW of size 0 is -EINVAL") {
    KernelFixture t;
    drm_msm_gem_new a{0, MSM_BO_WC, 0};
    CHECK(t.k.gem_new(t.f, a) == -EINVAL);
}

TEST_CASE("GEM_NEW beyond the memory limit is -ENOMEM until memory is freed") {
    KernelConfig cfg;
    cfg.memory_limit = 3 * 4096;
    KernelFixture t(cfg);
    uint32_t a = t.bo(8192);
    t.bo(4096);
    drm_msm_gem_new n{4096, MSM_BO_WC, 0};
    CHECK(t.k.gem_new(t.f, n) == -ENOMEM);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    CHECK(t.k.gem_new(t.f, n) == 0);
}

TEST_CASE("GEM_INFO refuses unknown kinds, len != 0 for by-value kinds and unknown handles (1.2 #1-2)") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    drm_msm_gem_info a{h, 0x42, 0, 0, 0};
    CHECK(t.k.gem_info(t.f, a) == -EINVAL);
    a = {h, MSM_INFO_SET_IOVA, kVa, 8, 0};
    CHECK(t.k.gem_info(t.f, a) == -EINVAL);
    a = {h, MSM_INFO_GET_IOVA, 0, 8, 0};
    CHECK(t.k.gem_info(t.f, a) == -EINVAL);
    a = {h + 100, MSM_INFO_SET_IOVA, kVa, 0, 0};
    CHECK(t.k.gem_info(t.f, a) == -ENOENT);
}

TEST_CASE("SET_IOVA reserves exactly [iova, iova+size) (1.2 #7)") {
    KernelFixture t;
    uint32_t h = t.bo(3 * 4096);
    REQUIRE(t.set_iova(h, kVa + 0x10000) == 0);
    auto m = t.k.mappings(t.f);
    REQUIRE(m.size() == 1);
    CHECK(m[0].iova == kVa + 0x10000);
    CHECK(m[0].size == 3 * 4096);
}

TEST_CASE("SET_IOVA on an overlapping range is -ENOSPC (1.2 #7)") {
    KernelFixture t;
    uint32_t a = t.bo(2 * 4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    CHECK(t.set_iova(b, kVa + 4096) == -ENOSPC);
    CHECK(t.set_iova(b, kVa + 2 * 4096) == 0); // adjacent is fine
}

TEST_CASE("SET_IOVA outside the address space or unaligned is -ENOSPC (1.2 #7)") {
    KernelFixture t;
    uint32_t h = t.bo(2 * 4096);
    CHECK(t.set_iova(h, kVa - 4096) == -ENOSPC);                     // straddles the start
    CHECK(t.set_iova(h, 0x1000) == -ENOSPC);                         // below
    CHECK(t.set_iova(h, kVa + 0x1'0000'0000ull - 4096) == -ENOSPC); // straddles the end
    CHECK(t.set_iova(h, kVa + 0x1'0000'0000ull) == -ENOSPC);        // beyond
    CHECK(t.set_iova(h, kVa + 0x800) == -ENOSPC);                    // unaligned
    CHECK(t.set_iova(h, UINT64_MAX - 4095) == -ENOSPC);              // wraps
    CHECK(t.k.mappings(t.f).empty());
    CHECK(t.set_iova(h, kVa + 0x1'0000'0000ull - 2 * 4096) == 0);   // last pages
}

TEST_CASE("SET_IOVA to the iova the object already has is idempotent (1.2 #8)") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    CHECK(t.set_iova(h, kVa) == 0);
    CHECK(t.k.mappings(t.f).size() == 1);
}

TEST_CASE("SET_IOVA to a different iova is -EBUSY and clears the old mapping (1.2 #9)") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    CHECK(t.set_iova(h, kVa + 0x10000) == -EBUSY);
    CHECK(t.k.mappings(t.f).empty());
    CHECK(t.set_iova(h, kVa + 0x10000) == 0);
}

TEST_CASE("SET_IOVA without a per-process address space is -EOPNOTSUPP (1.2 #5)") {
    KernelFixture t;
    FileId g = t.k.open_file(false);
    drm_msm_gem_new n{4096, MSM_BO_WC, 0};
    REQUIRE(t.k.gem_new(g, n) == 0);
    CHECK(t.set_iova(n.handle, kVa, g) == -EOPNOTSUPP);
    CHECK(t.set_iova(n.handle, 0, g) == -EOPNOTSUPP);
}

TEST_CASE("SET_IOVA 0 releases the range so another object can take it (1.2 #6)") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096);
    CHECK(t.set_iova(a, 0) == 0); // nothing mapped: still 0
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.set_iova(b, kVa) == -ENOSPC);
    REQUIRE(t.set_iova(a, 0) == 0);
    CHECK(t.set_iova(b, kVa) == 0);
}

TEST_CASE("Classic era: SET_IOVA 0 on a range pinned by an unretired submit is -EBUSY until retire (6a)") {
    KernelFixture t(era(KernelEra::Classic));
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0);
    CHECK(t.set_iova(h, 0) == -EBUSY);
    CHECK(t.k.mappings(t.f).size() == 1);
    t.k.retire_all();
    CHECK(t.set_iova(h, 0) == 0);
    CHECK(t.k.mappings(t.f).empty());
    CHECK(t.k.global_faults() == 0);
}

TEST_CASE("NoVmaTracking era: SET_IOVA 0 while pinned succeeds and the running submit faults (6b)") {
    KernelFixture t(era(KernelEra::NoVmaTracking));
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0);
    CHECK(t.k.global_faults() == 0);
    CHECK(t.set_iova(h, 0) == 0);
    CHECK(t.k.global_faults() == 1);
    CHECK(t.k.file_faults(t.f) == 1);
    uint32_t faults = 0;
    drm_msm_submitqueue_query qq{1, q, MSM_SUBMITQUEUE_PARAM_FAULTS, 4, 0};
    REQUIRE(t.k.submitqueue_query(t.f, qq, {reinterpret_cast<uint8_t*>(&faults), 4}) == 0);
    CHECK(faults == 1);
    auto log = t.k.fault_log();
    REQUIRE(log.size() == 1);
    CHECK(log[0].iova == kVa);
    CHECK(log[0].fence == 1);
}

TEST_CASE("NoVmaTracking era: remapping a cleared range under a running submit counts one fault per submit") {
    KernelFixture t(era(KernelEra::NoVmaTracking));
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{a, kVa}}) == 0);
    REQUIRE(t.set_iova(a, 0) == 0);
    REQUIRE(t.set_iova(b, kVa) == 0); // the stale reference now hits b's memory
    CHECK(t.k.global_faults() == 1);
    t.k.retire_all();
    CHECK(t.k.global_faults() == 1);
}

TEST_CASE("A bo whose presumed iova differs from its mapping faults at submit time") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa + 0x4000) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0);
    CHECK(t.k.global_faults() == 1);
}

TEST_CASE("A bo entry without a presumed iova counts as a fault") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{h, 0}}) == 0);
    CHECK(t.k.global_faults() == 1);
}

TEST_CASE("A bo submitted without an iova gets a kernel-chosen one, and a later SET_IOVA elsewhere fails (12.3)") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{a, kVa}, {b, kVa + 0x100000}}) == 0);
    CHECK(t.k.global_faults() == 1); // b is not where the guest believes
    uint64_t iova = 0;
    REQUIRE(t.get_iova(b, &iova) == 0);
    CHECK(iova == kVa + 4096); // best fit, low in the range
    t.k.retire_all();
    CHECK(t.set_iova(b, kVa + 0x100000) == -EBUSY);
}

TEST_CASE("GET_IOVA allocates best-fit, lowest address first") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096), c = t.bo(2 * 4096), d = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.set_iova(b, kVa + 3 * 4096) == 0); // hole of 2 pages at kVa+4096
    REQUIRE(t.set_iova(c, kVa + 5 * 4096) == 0); // hole of 1 page at kVa+4*4096
    uint64_t iova = 0;
    REQUIRE(t.get_iova(d, &iova) == 0);
    CHECK(iova == kVa + 4 * 4096);
    uint64_t again = 0;
    REQUIRE(t.get_iova(d, &again) == 0);
    CHECK(again == iova);
}

TEST_CASE("GEM_CLOSE of an idle object releases its range") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    CHECK(t.set_iova(b, kVa) == 0);
    CHECK(t.k.live_objects() == 1);
}

// Every era, VM_BIND included (there the release happens when the submit retires, without a fault).
TEST_CASE("GEM_CLOSE of a pinned object keeps its range reserved until the submit retires (1.4)") {
    const KernelEra e = GENERATE(KernelEra::Classic, KernelEra::NoVmaTracking, KernelEra::VmBind);
    KernelFixture t(era(e));
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{a, kVa}}) == 0);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    CHECK(t.set_iova(b, kVa) == -ENOSPC);
    t.k.retire_all();
    CHECK(t.set_iova(b, kVa) == 0);
    CHECK(t.k.global_faults() == 0);
}

TEST_CASE("GEM_CLOSE of an unknown handle is -EINVAL") {
    KernelFixture t;
    CHECK(t.k.gem_close(t.f, 77) == -EINVAL);
}

TEST_CASE("An exported object keeps its range after GEM_CLOSE until the last fd is closed (1.4)") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    int fd = -1;
    REQUIRE(t.k.prime_handle_to_fd(t.f, a, &fd) == 0);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    CHECK(t.set_iova(b, kVa) == -ENOSPC);
    close(fd);
    CHECK(t.set_iova(b, kVa) == 0);
}

TEST_CASE("PRIME import gives one handle per object per file and no iova in the importing file (B14)") {
    KernelFixture t;
    uint32_t a = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    int fd = -1;
    REQUIRE(t.k.prime_handle_to_fd(t.f, a, &fd) == 0);
    FileId g = t.k.open_file();
    uint32_t h1 = 0, h2 = 0;
    REQUIRE(t.k.prime_fd_to_handle(g, fd, &h1) == 0);
    REQUIRE(t.k.prime_fd_to_handle(g, fd, &h2) == 0);
    CHECK(h1 == h2);
    CHECK(t.k.mappings(g).empty());
    CHECK(t.set_iova(h1, kVa, g) == 0); // separate address space: same iova is free there
    uint32_t self = 0;
    REQUIRE(t.k.prime_fd_to_handle(t.f, fd, &self) == 0);
    CHECK(self == a);
    close(fd);
    CHECK(t.k.prime_fd_to_handle(g, 0, &h1) == -EINVAL); // stdin is no dma-buf
}

TEST_CASE("CPU_PREP NOSYNC is -EBUSY while a pending submit writes the bo, 0 after retire") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{h, kVa, MSM_SUBMIT_BO_WRITE}}) == 0);
    CHECK(t.cpu_prep(h, MSM_PREP_READ | MSM_PREP_NOSYNC) == -EBUSY);
    CHECK(t.cpu_prep(h, MSM_PREP_WRITE | MSM_PREP_NOSYNC) == -EBUSY);
    t.k.retire_all();
    CHECK(t.cpu_prep(h, MSM_PREP_WRITE | MSM_PREP_NOSYNC) == 0);
}

TEST_CASE("CPU_PREP READ does not wait for pending readers, WRITE does") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{h, kVa, MSM_SUBMIT_BO_READ}}) == 0);
    CHECK(t.cpu_prep(h, MSM_PREP_READ | MSM_PREP_NOSYNC) == 0);
    CHECK(t.cpu_prep(h, MSM_PREP_WRITE | MSM_PREP_NOSYNC) == -EBUSY);
}

TEST_CASE("CPU_PREP with a future deadline on a busy bo is -ETIMEDOUT on the manual clock, invalid op -EINVAL") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{h, kVa}}) == 0);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    drm_msm_gem_cpu_prep a{h, MSM_PREP_WRITE, {now.tv_sec + 100, 0}};
    CHECK(t.k.gem_cpu_prep(t.f, a) == -ETIMEDOUT);
    CHECK(t.cpu_prep(h, MSM_PREP_WRITE) == -EBUSY); // deadline already passed: remaining 0
    CHECK(t.cpu_prep(h, 0x100) == -EINVAL);
    CHECK(t.cpu_prep(h + 9, MSM_PREP_READ) == -ENOENT);
}

TEST_CASE("SUBMITQUEUE_NEW refuses prio >= PRIORITIES and ALLOW_PREEMPT without preemption") {
    KernelFixture t;
    drm_msm_submitqueue q{0, 3, 0};
    CHECK(t.k.submitqueue_new(t.f, q) == -EINVAL);
    q = {MSM_SUBMITQUEUE_ALLOW_PREEMPT, 1, 0};
    CHECK(t.k.submitqueue_new(t.f, q) == -EINVAL);
    q = {0x10, 1, 0};
    CHECK(t.k.submitqueue_new(t.f, q) == -EINVAL);
    q = {0, 2, 0};
    REQUIRE(t.k.submitqueue_new(t.f, q) == 0);
    CHECK(q.id == 1);
}

TEST_CASE("SUBMITQUEUE_CLOSE of the default or an unknown queue is -ENOENT; a closed queue is gone") {
    KernelFixture t;
    CHECK(t.k.submitqueue_close(t.f, 0) == -ENOENT);
    CHECK(t.k.submitqueue_close(t.f, 5) == -ENOENT);
    uint32_t q = t.queue();
    CHECK(t.k.submitqueue_close(t.f, q) == 0);
    CHECK(t.wait(q, 0) == -ENOENT);
}

TEST_CASE("SUBMITQUEUE_QUERY FAULTS: len 0 asks for the size, unknown queue -ENOENT, other params -EINVAL") {
    KernelFixture t;
    uint32_t q = t.queue();
    uint32_t v = 99;
    drm_msm_submitqueue_query a{1, q, MSM_SUBMITQUEUE_PARAM_FAULTS, 0, 0};
    REQUIRE(t.k.submitqueue_query(t.f, a, {}) == 0);
    CHECK(a.len == 4);
    a = {1, q, MSM_SUBMITQUEUE_PARAM_FAULTS, 4, 0};
    REQUIRE(t.k.submitqueue_query(t.f, a, {reinterpret_cast<uint8_t*>(&v), 4}) == 0);
    CHECK(v == 0);
    a = {1, q + 5, MSM_SUBMITQUEUE_PARAM_FAULTS, 4, 0};
    CHECK(t.k.submitqueue_query(t.f, a, {reinterpret_cast<uint8_t*>(&v), 4}) == -ENOENT);
    a = {1, q, 7, 4, 0};
    CHECK(t.k.submitqueue_query(t.f, a, {reinterpret_cast<uint8_t*>(&v), 4}) == -EINVAL);
}

TEST_CASE("GEM_SUBMIT validates pipe, flags, queue, bo table and cmds with the kernel's errnos") {
    KernelFixture t;
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.set_iova(b, kVa + 4096) == 0);
    uint32_t q = t.queue();
    using Cmd = drm_msm_gem_submit_cmd;
    auto cmd = [](uint32_t type, uint32_t idx, uint32_t off, uint32_t size) {
        return std::vector<Cmd>{{type, idx, off, size, 0, 0, 0}};
    };
    std::vector<drm_msm_gem_submit_bo> bos{{MSM_SUBMIT_BO_READ, a, kVa}};
    std::vector<Cmd> cmds = cmd(MSM_SUBMIT_CMD_BUF, 0, 0, 64);
    drm_msm_gem_submit s{};
    s.flags = MSM_PIPE_2D0;
    s.nr_bos = 1;
    s.nr_cmds = 1;
    s.queueid = q;
    CHECK(t.k.gem_submit(t.f, s, bos, cmds) == -EINVAL);       // pipe
    s.flags = MSM_PIPE_3D0 | 0x00010000;
    CHECK(t.k.gem_submit(t.f, s, bos, cmds) == -EINVAL);       // unknown flag
    s.flags = MSM_PIPE_3D0 | MSM_SUBMIT_SUDO;
    CHECK(t.k.gem_submit(t.f, s, bos, cmds) == -EINVAL);       // unprivileged
    CHECK(t.submit(q + 7, 1, {{a, kVa}}) == -ENOENT);          // queue
    CHECK(t.submit(q, 1, {{a + 50, kVa}}) == -EINVAL);         // handle
    CHECK(t.submit(q, 1, {{a, kVa}, {a, kVa}}) == -EINVAL);    // duplicate
    CHECK(t.submit(q, 1, {{a, kVa, MSM_SUBMIT_BO_DUMP}}) == -EINVAL); // neither READ nor WRITE
    CHECK(t.submit(q, 1, {{a, kVa, 0x100 | MSM_SUBMIT_BO_READ}}) == -EINVAL);
    CHECK(t.submit(q, 1, {{a, kVa}}, 0, cmd(9, 0, 0, 64)) == -EINVAL);                    // type
    CHECK(t.submit(q, 1, {{a, kVa}}, 0, cmd(MSM_SUBMIT_CMD_BUF, 1, 0, 64)) == -EINVAL);   // idx
    CHECK(t.submit(q, 1, {{a, kVa}}, 0, cmd(MSM_SUBMIT_CMD_BUF, 0, 4064, 64)) == -EINVAL); // past bo
    CHECK(t.submit(q, 1, {{a, kVa}}, 0, cmd(MSM_SUBMIT_CMD_BUF, 0, 0, 0)) == -EINVAL);    // empty
    CHECK(t.submit(q, 1, {{a, kVa}}, 0, cmd(MSM_SUBMIT_CMD_BUF, 0, 0, 62)) == -EINVAL);   // unaligned
    CHECK(t.k.pending_submits() == 0);
    CHECK(t.submit(q, 1, {{a, kVa}, {b, kVa + 4096}}, 0, cmd(MSM_SUBMIT_CMD_BUF, 1, 4032, 64)) == 0);
    CHECK(t.k.global_faults() == 0);
}

TEST_CASE("FENCE_SN_IN: fence 0 and a fence still unretired on the queue are -EINVAL; reuse after retire is fine (F7)") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    CHECK(t.submit(q, 0, {{h, kVa}}) == -EINVAL);
    REQUIRE(t.submit(q, 5, {{h, kVa}}) == 0);
    CHECK(t.submit(q, 5, {{h, kVa}}) == -EINVAL);
    uint32_t other = t.queue();
    CHECK(t.submit(other, 5, {{h, kVa}}) == 0); // tables are per queue
    t.k.retire_all();
    CHECK(t.submit(q, 5, {{h, kVa}}) == 0);
}

TEST_CASE("WAIT_FENCE: pending -ETIMEDOUT, retired 0, after the last fence -EINVAL (signed), bad queue -ENOENT") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 10, {{h, kVa}}) == 0);
    CHECK(t.wait(q, 10) == -ETIMEDOUT);
    CHECK(t.wait(q, 9) == 0);  // never submitted but not "after": treated as done
    CHECK(t.wait(q, 11) == -EINVAL);
    CHECK(t.wait(q, 10 + 0x80000000u) == 0); // signed compare: this is "before" 10
    CHECK(t.wait(q + 3, 1) == -ENOENT);
    t.k.retire_all();
    CHECK(t.wait(q, 10) == 0);
}

TEST_CASE("The manual GPU clock retires submits in order after their execution time") {
    KernelConfig cfg;
    cfg.gpu_exec_us = 100;
    KernelFixture t(cfg);
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0);
    REQUIRE(t.submit(q, 2, {{h, kVa}}) == 0);
    t.k.advance(99);
    CHECK(t.wait(q, 1) == -ETIMEDOUT);
    t.k.advance(1);
    CHECK(t.wait(q, 1) == 0);
    CHECK(t.wait(q, 2) == -ETIMEDOUT);
    t.k.advance(100);
    CHECK(t.wait(q, 2) == 0);
    CHECK(t.k.pending_submits() == 0);
}

TEST_CASE("A per-submit execution time function overrides the fixed one, submit by submit") {
    KernelConfig cfg;
    cfg.gpu_exec_us = 1000; // ignored once the function is set
    std::vector<uint64_t> times = {30, 200};
    size_t next = 0;
    cfg.gpu_exec_us_fn = [&] { return times[next++ % times.size()]; };
    KernelFixture t(cfg);
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0); // runs 0..30
    REQUIRE(t.submit(q, 2, {{h, kVa}}) == 0); // queued behind it: 30..230
    CHECK(next == 2);
    t.k.advance(30);
    CHECK(t.wait(q, 1) == 0);
    CHECK(t.wait(q, 2) == -ETIMEDOUT);
    t.k.advance(199);
    CHECK(t.wait(q, 2) == -ETIMEDOUT);
    t.k.advance(1);
    CHECK(t.wait(q, 2) == 0);
}

TEST_CASE("The real-time GPU clock retires submits on its own thread and blocking waits return") {
    KernelConfig cfg;
    cfg.clock = ClockMode::RealTime;
    cfg.gpu_exec_us = 2000;
    KernelFixture t(cfg);
    std::atomic<int> retired{0};
    t.k.set_retire_listener([&](const std::vector<RetiredSubmit>& v) { retired += int(v.size()); });
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    REQUIRE(t.submit(q, 1, {{h, kVa}}) == 0);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    drm_msm_wait_fence w{1, 0, {now.tv_sec + 30, now.tv_nsec}, q, 0};
    CHECK(t.k.wait_fence(t.f, w) == 0);
    for (int i = 0; i < 3000 && retired.load() == 0; i++)
        usleep(1000);
    CHECK(retired.load() == 1);
}

TEST_CASE("A closed file's address space stays until its submits retire, without faults") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    REQUIRE(t.submit(t.queue(), 1, {{h, kVa}}) == 0);
    t.k.close_file(t.f);
    CHECK(t.k.live_objects() == 1);
    t.k.retire_all();
    CHECK(t.k.live_objects() == 0);
    CHECK(t.k.global_faults() == 0);
    CHECK(t.k.memory_used() == 0);
}

TEST_CASE("Injected failures hit the nth call of an operation once") {
    KernelFixture t;
    t.k.inject_failure(KernelOp::GemNew, 2, -ENOSPC);
    drm_msm_gem_new n{4096, MSM_BO_WC, 0};
    CHECK(t.k.gem_new(t.f, n) == 0);
    CHECK(t.k.gem_new(t.f, n) == -ENOSPC);
    CHECK(t.k.gem_new(t.f, n) == 0);
    t.k.inject_failure(KernelOp::SetIova, 1, -ENOMEM);
    CHECK(t.set_iova(n.handle, kVa) == -ENOMEM);
    CHECK(t.set_iova(n.handle, kVa) == 0);
}

TEST_CASE("SET_NAME keeps printable bytes and refuses 32 bytes or more; GET_NAME returns it") {
    KernelFixture t;
    uint32_t h = t.bo(4096);
    std::string name = "vtx\x01junk";
    drm_msm_gem_info a{h, MSM_INFO_SET_NAME, 1, uint32_t(name.size()), 0};
    REQUIRE(t.k.gem_info(t.f, a, {reinterpret_cast<uint8_t*>(name.data()), name.size()}) == 0);
    char out[32] = {};
    a = {h, MSM_INFO_GET_NAME, 1, 32, 0};
    REQUIRE(t.k.gem_info(t.f, a, {reinterpret_cast<uint8_t*>(out), 32}) == 0);
    CHECK(a.len == 3);
    CHECK(std::string(out, a.len) == "vtx");
    std::string longname(32, 'a');
    a = {h, MSM_INFO_SET_NAME, 1, 32, 0};
    CHECK(t.k.gem_info(t.f, a, {reinterpret_cast<uint8_t*>(longname.data()), 32}) == -EINVAL);
}

TEST_CASE("VmBind era: GEM_CLOSE releases the range even while a dma-buf export or a CPU mapping keeps the object (12.3)") {
    KernelFixture t(era(KernelEra::VmBind));
    uint32_t a = t.bo(4096), m = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    REQUIRE(t.set_iova(m, kVa + 0x10000) == 0);
    int fd = -1;
    REQUIRE(t.k.prime_handle_to_fd(t.f, a, &fd) == 0);
    drm_msm_gem_info off{m, MSM_INFO_GET_OFFSET, 0, 0, 0};
    REQUIRE(t.k.gem_info(t.f, off) == 0);
    int mfd = -1;
    uint64_t mobj = 0;
    REQUIRE(t.k.cpu_map(t.f, off.value, 4096, &mfd, &mobj) == 0);
    close(mfd);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    REQUIRE(t.k.gem_close(t.f, m) == 0);
    CHECK(t.k.live_objects() == 3); // export and mapping keep both objects
    CHECK(t.set_iova(b, kVa) == 0);
    REQUIRE(t.set_iova(b, 0) == 0);
    CHECK(t.set_iova(b, kVa + 0x10000) == 0);
    t.k.cpu_unmap(mobj);
    close(fd);
    CHECK(t.k.global_faults() == 0);
}

TEST_CASE("Classic era: a CPU mapping keeps the range reserved after GEM_CLOSE until it is unmapped (12.3)") {
    KernelFixture t(era(KernelEra::Classic));
    uint32_t a = t.bo(4096), b = t.bo(4096);
    REQUIRE(t.set_iova(a, kVa) == 0);
    drm_msm_gem_info off{a, MSM_INFO_GET_OFFSET, 0, 0, 0};
    REQUIRE(t.k.gem_info(t.f, off) == 0);
    int mfd = -1;
    uint64_t obj = 0;
    CHECK(t.k.cpu_map(t.f, off.value + 4096, 4096, &mfd, &obj) == -EINVAL);
    CHECK(t.k.cpu_map(t.f, off.value, 8192, &mfd, &obj) == -EINVAL);
    REQUIRE(t.k.cpu_map(t.f, off.value, 4096, &mfd, &obj) == 0);
    close(mfd);
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    CHECK(t.set_iova(b, kVa) == -ENOSPC);
    t.k.cpu_unmap(obj);
    CHECK(t.set_iova(b, kVa) == 0);
}

TEST_CASE("retire_at_submit: a zero-time submit on an idle ring is retired when GEM_SUBMIT returns, "
          "with no retire event; one queued behind GPU time still goes to the GPU thread") {
    KernelConfig cfg;
    cfg.clock = ClockMode::RealTime;
    cfg.retire_at_submit = true;
    uint64_t gpu_us = 0;
    cfg.gpu_exec_us_fn = [&gpu_us] { return gpu_us; };
    KernelFixture t(cfg);
    std::atomic<int> events{0};
    t.k.set_retire_listener([&](const std::vector<RetiredSubmit>& v) { events += int(v.size()); });
    uint32_t h = t.bo(4096);
    REQUIRE(t.set_iova(h, kVa) == 0);
    uint32_t q = t.queue();
    for (uint32_t fence = 1; fence <= 50; ++fence) {
        REQUIRE(t.submit(q, fence, {{h, kVa}}) == 0);
        // Without the option this is the GPU thread's job, which has usually not run yet.
        REQUIRE(t.k.fence_retired(t.f, q, fence));
    }
    CHECK(t.k.pending_submits() == 0);
    CHECK(events.load() == 0);
    // With GPU time the submit waits for the GPU thread, and so does a zero-time one behind it
    // (300 ms: still pending at the check even under QEMU TCG, where the guest suite runs this).
    gpu_us = 300000;
    REQUIRE(t.submit(q, 51, {{h, kVa}}) == 0);
    gpu_us = 0;
    REQUIRE(t.submit(q, 52, {{h, kVa}}) == 0);
    CHECK_FALSE(t.k.fence_retired(t.f, q, 52));
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    drm_msm_wait_fence w{52, 0, {now.tv_sec + 30, now.tv_nsec}, q, 0};
    CHECK(t.k.wait_fence(t.f, w) == 0);
    for (int i = 0; i < 3000 && events.load() < 2; i++)
        usleep(1000);
    CHECK(events.load() == 2);
}

TEST_CASE("recycle_backings: a freed object's memory serves the next object of its size, reading "
          "as zero; an exported object's memory is never reused") {
    KernelConfig cfg;
    cfg.recycle_backings = true;
    KernelFixture t(cfg);
    auto mapped = [&](uint32_t h) {
        void* p = nullptr;
        uint64_t size = 0;
        REQUIRE(t.k.map_object(t.f, h, &p, &size) == 0);
        return static_cast<unsigned char*>(p);
    };
    uint32_t a = t.bo(3 * 4096);
    unsigned char* pa = mapped(a);
    std::memset(pa + 4096, 0xab, 4096); // only the middle page gets memory
    pa[3 * 4096 - 1] = 0xcd;
    REQUIRE(t.k.gem_close(t.f, a) == 0);
    uint32_t b = t.bo(3 * 4096);
    unsigned char* pb = mapped(b);
    CHECK(pb == pa); // the same memory, not unmapped and mapped again
    bool zero = true;
    for (size_t i = 0; i < 3 * 4096; ++i)
        zero = zero && pb[i] == 0;
    CHECK(zero);
    // Exported: an fd (here, a mapping made through it) may still reach the memory, so it is
    // not reused: what the next object's user writes must not show through that mapping.
    int fd = -1;
    REQUIRE(t.k.prime_handle_to_fd(t.f, b, &fd) == 0);
    auto* outside = static_cast<unsigned char*>(mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    REQUIRE(outside != MAP_FAILED);
    close(fd);
    REQUIRE(t.k.gem_close(t.f, b) == 0);
    uint32_t d = t.bo(3 * 4096);
    std::memset(mapped(d), 0x5a, 3 * 4096);
    CHECK(outside[0] == 0);
    CHECK(outside[4096] == 0);
    munmap(outside, 3 * 4096);
}
