// The guest backend from the outside: this binary runs with libfdnc_drm_shim.so preloaded and
// FDNC_SHIM_BACKEND=guest (meson sets it), and drives the msm uAPI the way Mesa's msm backend does
// (src/freedreno/drm/msm in Mesa 25.0.7): raw ioctls on the node, mmap at GET_OFFSET, fences.
// Two runs: "[guest]" over an in-process host that executes (gpu_us 300 ms, so fences are really
// pending for a while), "[stalled]" over one that takes requests and never answers.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>
#include <xf86drm.h>

#include "shim_node.h"
#include "virtio_proto/msm_uapi.h"

using namespace fdnc::wire;

namespace {

struct Node : fdnc::test::ShimNode {
    uint64_t info(uint32_t handle, uint32_t what) const {
        drm_msm_gem_info a{handle, what, 0, 0, 0};
        REQUIRE(ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &a) == 0);
        return a.value;
    }
    uint32_t queue(uint32_t prio = 0) const {
        drm_msm_submitqueue q{0, prio, 0};
        REQUIRE(ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_NEW, &q) == 0);
        return q.id;
    }
    // One CMD_BUF of `cmd_bytes` at the start of `cmd`, `other` in the table too. Returns the fence.
    int submit(uint32_t queue, uint32_t cmd, uint32_t other, uint32_t flags, uint32_t* fence, int* fence_fd = nullptr) {
        drm_msm_gem_submit_bo bos[2] = {{MSM_SUBMIT_BO_READ, cmd, 0}, {MSM_SUBMIT_BO_WRITE, other, 0}};
        drm_msm_gem_submit_cmd c{};
        c.type = MSM_SUBMIT_CMD_BUF;
        c.submit_idx = 0;
        c.submit_offset = 0;
        c.size = 64;
        drm_msm_gem_submit s{};
        s.flags = MSM_PIPE_3D0 | flags;
        s.nr_bos = other ? 2 : 1;
        s.nr_cmds = 1;
        s.bos = reinterpret_cast<uintptr_t>(bos);
        s.cmds = reinterpret_cast<uintptr_t>(&c);
        s.queueid = queue;
        int r = ioctl_err(DRM_IOCTL_MSM_GEM_SUBMIT, &s);
        if (r == 0) {
            *fence = s.fence;
            if (fence_fd)
                *fence_fd = s.fence_fd;
        }
        return r;
    }
    int wait(uint32_t queue, uint32_t fence, int64_t timeout_ns) const {
        drm_msm_wait_fence w{};
        w.fence = fence;
        w.queueid = queue;
        timespec now{};
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t t = now.tv_sec * 1'000'000'000LL + now.tv_nsec + timeout_ns;
        w.timeout = {t / 1'000'000'000, t % 1'000'000'000};
        return ioctl_err(DRM_IOCTL_MSM_WAIT_FENCE, &w);
    }
};

// The shim's counters, found as a GL program finds them.
std::string device_stats() {
    using Fn = int (*)(char*, size_t);
    auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "fdnc_drm_shim_device_stats"));
    REQUIRE(fn != nullptr);
    char buf[2048];
    int n = fn(buf, sizeof buf);
    REQUIRE(n > 0);
    return buf;
}

uint64_t stat_of(const std::string& json, const std::string& key) {
    auto at = json.find("\"" + key + "\":");
    REQUIRE(at != std::string::npos);
    return std::strtoull(json.c_str() + at + key.size() + 3, nullptr, 10);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

TEST_CASE("guest backend: the node is msm at the host's version, params come from the capset", "[guest]") {
    Node n;
    drmVersionPtr v = drmGetVersion(n.fd);
    REQUIRE(v);
    CHECK(std::string(v->name) == "msm");
    CHECK(v->version_major == 1);
    CHECK(v->version_minor >= 12); // VA_START/VA_SIZE and SET_IOVA exist
    drmFreeVersion(v);
    CHECK(n.param(MSM_PARAM_GPU_ID) != 0);
    CHECK(n.param(MSM_PARAM_CHIP_ID) != 0);
    CHECK(n.param(MSM_PARAM_VA_SIZE) > 0);
    CHECK(n.param(MSM_PARAM_PRIORITIES) >= 1);
    n.param(MSM_PARAM_TIMESTAMP); // a host round trip, answered
    drm_msm_param bad{MSM_PIPE_2D0, MSM_PARAM_GPU_ID, 0, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GET_PARAM, &bad) == -EINVAL);
    drm_msm_param unknown{MSM_PIPE_3D0, 0x7f, 0, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GET_PARAM, &unknown) == -EINVAL);
    const char comm[] = "fdnc-test";
    drm_msm_param sp{MSM_PIPE_3D0, MSM_PARAM_COMM, reinterpret_cast<uintptr_t>(comm), sizeof comm - 1, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SET_PARAM, &sp) == 0);
    drm_msm_param sys{MSM_PIPE_3D0, MSM_PARAM_SYSPROF, 1, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SET_PARAM, &sys) == -EPERM);
}

TEST_CASE("guest backend: GEM_NEW gets a guest iova inside the VA range, distinct per live bo", "[guest]") {
    Node n;
    const uint64_t start = n.param(MSM_PARAM_VA_START), size = n.param(MSM_PARAM_VA_SIZE);
    const uint32_t a = n.bo(0x3000), b = n.bo(0x1000, MSM_BO_CACHED_COHERENT);
    const uint64_t ia = n.info(a, MSM_INFO_GET_IOVA), ib = n.info(b, MSM_INFO_GET_IOVA);
    CHECK(ia >= start);
    CHECK(ia + 0x3000 <= start + size);
    CHECK((ib >= ia + 0x3000 || ib + 0x1000 <= ia));
    CHECK(n.info(b, MSM_INFO_GET_FLAGS) == MSM_BO_CACHED_COHERENT);

    drm_msm_gem_info same{a, MSM_INFO_SET_IOVA, ia, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &same) == 0);
    drm_msm_gem_info other{a, MSM_INFO_SET_IOVA, ia + 0x100000, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &other) == -EBUSY);
    drm_msm_gem_new bad_flags{0x1000, 0x100, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_NEW, &bad_flags) == -EINVAL);
    drm_msm_gem_new two_caches{0x1000, MSM_BO_WC | MSM_BO_CACHED, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_NEW, &two_caches) == -EINVAL);
    drm_msm_gem_info none{9999, MSM_INFO_GET_IOVA, 0, 0, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &none) == -ENOENT);

    // name and metadata stay with the object
    const char name[] = "vbo";
    drm_msm_gem_info sn{a, MSM_INFO_SET_NAME, reinterpret_cast<uintptr_t>(name), 3, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &sn) == 0);
    char got[32] = {};
    drm_msm_gem_info gn{a, MSM_INFO_GET_NAME, reinterpret_cast<uintptr_t>(got), sizeof got, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &gn) == 0);
    CHECK(std::string(got, gn.len) == "vbo");
    uint8_t md[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, back[16] = {};
    drm_msm_gem_info sm{a, MSM_INFO_SET_METADATA, reinterpret_cast<uintptr_t>(md), sizeof md, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &sm) == 0);
    drm_msm_gem_info small{a, MSM_INFO_GET_METADATA, reinterpret_cast<uintptr_t>(back), 4, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &small) == -525); // ETOOSMALL
    drm_msm_gem_info gm{a, MSM_INFO_GET_METADATA, reinterpret_cast<uintptr_t>(back), sizeof back, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &gm) == 0);
    CHECK(std::memcmp(md, back, sizeof md) == 0);

    drm_msm_gem_madvise mv{a, MSM_MADV_DONTNEED, 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_MADVISE, &mv) == 0);
    CHECK(mv.retained == 1);
    CHECK(n.gem_close(a) == 0);
    CHECK(n.gem_close(a) == -EINVAL);
    CHECK(n.gem_close(b) == 0);
}

TEST_CASE("guest backend: mmap at GET_OFFSET is the bo's memory; munmap leaves the bo usable", "[guest]") {
    Node n;
    const uint32_t h = n.bo(0x2000);
    const uint64_t off = n.info(h, MSM_INFO_GET_OFFSET);
    auto* p = static_cast<uint8_t*>(mmap(nullptr, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, n.fd, off));
    REQUIRE(p != MAP_FAILED);
    std::memset(p, 0x5a, 0x2000);
    // A second mapping of the same bo sees the same bytes (the driver maps once; other users may not).
    auto* q = static_cast<uint8_t*>(mmap(nullptr, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, n.fd, off));
    REQUIRE(q != MAP_FAILED);
    CHECK(q != p);
    CHECK(q[0x1fff] == 0x5a);
    q[0] = 0x11;
    CHECK(p[0] == 0x11);
    CHECK(munmap(p, 0x2000) == 0);
    CHECK(q[1] == 0x5a); // still mapped: munmap of one mapping does not take the bo's away
    CHECK(munmap(q, 0x2000) == 0);
    auto* r = static_cast<uint8_t*>(mmap(nullptr, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, n.fd, off));
    REQUIRE(r != MAP_FAILED);
    CHECK(r[0] == 0x11);
    CHECK(munmap(r, 0x2000) == 0);
    CHECK(mmap(nullptr, 0x3000, PROT_READ, MAP_SHARED, n.fd, off) == MAP_FAILED); // longer than the bo
    CHECK(mmap(nullptr, 0x1000, PROT_READ, MAP_SHARED, n.fd, 0x7000000) == MAP_FAILED);
    CHECK(n.gem_close(h) == 0);
}

TEST_CASE("guest backend: submits on a submitqueue, fences, FENCE_FD_OUT, CPU_PREP", "[guest]") {
    Node n;
    const uint32_t q = n.queue(0);
    const uint32_t cmd = n.bo(0x1000), dst = n.bo(0x1000);
    uint32_t f1 = 0, f2 = 0;
    int fd = -1;
    REQUIRE(n.submit(q, cmd, dst, 0, &f1) == 0);
    REQUIRE(n.submit(q, cmd, dst, MSM_SUBMIT_FENCE_FD_OUT, &f2, &fd) == 0);
    CHECK(f2 == f1 + 1);
    REQUIRE(fd >= 0);
    // The host executes each submit for 300 ms: the fence is pending right after the submit.
    CHECK(n.wait(q, f2, 0) == -ETIMEDOUT);
    drm_msm_gem_cpu_prep nosync{dst, MSM_PREP_WRITE | MSM_PREP_NOSYNC, {0, 0}};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_CPU_PREP, &nosync) == -EBUSY);
    pollfd p{fd, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 0);
    CHECK(poll(&p, 1, 5000) == 1); // the out-fence fd becomes readable once the submit retired
    CHECK(n.wait(q, f2, 1'000'000'000) == 0);
    CHECK(n.wait(q, f1, 0) == 0);
    CHECK(n.wait(q, f2 + 5, 0) == -EINVAL); // never submitted
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_GEM_CPU_PREP, &nosync) == 0);
    close(fd);

    uint32_t f = 0;
    CHECK(n.submit(q + 100, cmd, dst, 0, &f) == -ENOENT);
    CHECK(n.submit(q, 4242, 0, 0, &f) == -EINVAL);
    CHECK(n.submit(q, cmd, cmd, 0, &f) == -EINVAL);                    // a bo twice in the table
    CHECK(n.submit(q, cmd, dst, MSM_SUBMIT_SUDO, &f) == -EPERM);
    CHECK(n.submit(q, cmd, dst, MSM_SUBMIT_SYNCOBJ_IN, &f) == -EOPNOTSUPP);
    // Queue 0 is the file's default queue, made on first use.
    CHECK(n.submit(0, cmd, dst, 0, &f) == 0);
    CHECK(n.wait(0, f, 2'000'000'000) == 0);

    uint32_t faults_len = 0;
    uint64_t faults = 99;
    drm_msm_submitqueue_query qq{reinterpret_cast<uintptr_t>(&faults), q, MSM_SUBMITQUEUE_PARAM_FAULTS,
                                 sizeof(uint32_t), 0};
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_QUERY, &qq) == 0);
    (void)faults_len;
    CHECK(static_cast<uint32_t>(faults) == 0);
    uint32_t id = q;
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE, &id) == 0);
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE, &id) == -ENOENT);
    CHECK(n.gem_close(cmd) == 0);
    CHECK(n.gem_close(dst) == 0);
    const std::string s = device_stats();
    CHECK(stat_of(s, "faults") == 0);
    CHECK(stat_of(s, "async_errors") == 0);
}

TEST_CASE("guest backend: PRIME export and re-import give the same handle and memory", "[guest]") {
    Node n;
    // A shareable bo (what Mesa asks for a buffer it exports): MSM_BO_SCANOUT.
    const uint32_t h = n.bo(0x1000, MSM_BO_WC | MSM_BO_SCANOUT);
    int fd = -1;
    REQUIRE(drmPrimeHandleToFD(n.fd, h, DRM_CLOEXEC, &fd) == 0);
    uint32_t back = 0;
    REQUIRE(drmPrimeFDToHandle(n.fd, fd, &back) == 0);
    CHECK(back == h);
    close(fd);
    CHECK(n.gem_close(h) == 0);
}

TEST_CASE("guest backend: handles are per open file; unknown ioctls are EINVAL", "[guest]") {
    Node a, b;
    const uint32_t h = a.bo(0x1000);
    drm_msm_gem_info i{h, MSM_INFO_GET_IOVA, 0, 0, 0};
    if (h != 0) {
        // b has no handle h (unless it made one): its first bo gets its own numbering.
        drm_msm_gem_info other = i;
        CHECK(b.ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &other) == -ENOENT);
    }
    CHECK(a.ioctl_err(DRM_IOW(DRM_COMMAND_BASE + 0x30, uint32_t), &i) == -EINVAL);
    CHECK(a.gem_close(h) == 0);
    const std::string s = device_stats();
    CHECK(stat_of(s, "bo_new_waits") == 0);
}

// The design's claim through the msm uAPI: a host that takes requests and never answers does not
// stop GEM_NEW. Over `inproc:stall=1` a bo_new that waited for the host would wait out the
// device's sync timeout and fail (the REQUIRE in Node::bo), and the counter would say so.
TEST_CASE("guest backend: GEM_NEW and GET_IOVA never wait on a host that never answers", "[stalled]") {
    Node n;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<uint32_t> handles;
    for (int i = 0; i < 200; i++) {
        handles.push_back(n.bo(0x1000 * (1 + i % 16)));
        CHECK(n.info(handles.back(), MSM_INFO_GET_IOVA) != 0);
    }
    const double elapsed = seconds_since(t0);
    const std::string s = device_stats();
    INFO(s << " elapsed " << elapsed << " s");
    CHECK(stat_of(s, "bo_news") >= 200);
    CHECK(stat_of(s, "bo_new_waits") == 0);
    for (uint32_t h : handles)
        CHECK(n.gem_close(h) == 0);
}
