// The fake msm render node, from the outside: a process with libfdnc_drm_shim.so preloaded (meson
// sets LD_PRELOAD and the FDNC_SHIM_* settings for this binary) opens FDNC_SHIM_NODE and talks to
// it through libc and libdrm exactly as virglrenderer does.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <regex>
#include <string>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include <xf86drm.h>

#include "shim_node.h"
#include "virtio_proto/msm_uapi.h"

using namespace fdnc::wire;

namespace {

constexpr uint64_t kSize = 0x10000;

std::string env_or_skip(const char* var) {
    const char* v = std::getenv(var);
    if (!v)
        FAIL(std::string(var) + " is not set: run this test through `meson test --suite drm_shim`");
    return v;
}

struct Node : fdnc::test::ShimNode {
    int info(uint32_t handle, uint32_t kind, uint64_t* value) const {
        drm_msm_gem_info a{handle, kind, *value, 0, 0};
        int r = ioctl_err(DRM_IOCTL_MSM_GEM_INFO, &a);
        *value = a.value;
        return r;
    }
    int set_iova(uint32_t handle, uint64_t iova) const { return info(handle, MSM_INFO_SET_IOVA, &iova); }
};

std::vector<std::string> log_lines() {
    std::ifstream in(env_or_skip("FDNC_SHIM_LOG"));
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
        lines.push_back(l);
    return lines;
}

// Each run starts with an empty log (the shim appends), before any test opens the node.
const int kLogTruncated = [] {
    if (const char* path = std::getenv("FDNC_SHIM_LOG"))
        return truncate(path, 0);
    return 0;
}();

bool log_has(const std::vector<std::string>& lines, const std::string& name, const std::string& result,
             const std::string& detail) {
    for (const auto& l : lines) {
        if (l.rfind(name + "\t" + result + "\t", 0) == 0 && l.find(detail) != std::string::npos)
            return true;
    }
    return false;
}

} // namespace

TEST_CASE("The node path opens a char device 226:128 whose drmGetVersion is msm 1.12.0") {
    Node n;
    struct stat st {};
    REQUIRE(fstat(n.fd, &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(major(st.st_rdev) == 226);
    CHECK(minor(st.st_rdev) == 128);
    struct stat by_path {};
    REQUIRE(stat(env_or_skip("FDNC_SHIM_NODE").c_str(), &by_path) == 0);
    CHECK(by_path.st_rdev == st.st_rdev);
    CHECK(access(env_or_skip("FDNC_SHIM_NODE").c_str(), R_OK | W_OK) == 0);

    drmVersionPtr v = drmGetVersion(n.fd);
    REQUIRE(v);
    CHECK(std::string(v->name, v->name_len) == "msm");
    CHECK(v->version_major == 1);
    CHECK(v->version_minor == 12);
    CHECK(v->version_patchlevel == 0);
    drmFreeVersion(v);

    uint64_t cap = 0;
    CHECK(drmGetCap(n.fd, DRM_CAP_PRIME, &cap) == 0);
    CHECK(cap == (DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT));
    CHECK(n.param(MSM_PARAM_VA_START) == kAdrenoVmStart);
    CHECK(n.param(MSM_PARAM_VA_SIZE) == kDefaultVaSize);
    CHECK(n.param(MSM_PARAM_GPU_ID) == 630);
}

TEST_CASE("A driver ioctl is dispatched by its number: SET_PARAM sent as DRM_IOWR (virglrenderer's SET_DEBUGINFO) works") {
    Node n;
    char comm[] = "fdnc-test";
    drm_msm_param p{MSM_PIPE_3D0, MSM_PARAM_COMM, reinterpret_cast<uintptr_t>(comm), sizeof comm - 1, 0};
    const unsigned long iowr = _IOWR(DRM_IOCTL_BASE, DRM_COMMAND_BASE + DRM_MSM_SET_PARAM, drm_msm_param);
    static_assert(_IOWR(DRM_IOCTL_BASE, DRM_COMMAND_BASE + DRM_MSM_SET_PARAM, drm_msm_param) == 0xc0186441);
    CHECK(n.ioctl_err(iowr, &p) == 0);
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SET_PARAM, &p) == 0);
    CHECK(log_has(log_lines(), "MSM_SET_PARAM", "0", "COMM"));
}

TEST_CASE("GEM_NEW + SET_IOVA + GET_IOVA; an overlapping SET_IOVA fails with the kernel's -ENOSPC") {
    Node n;
    uint64_t va = n.param(MSM_PARAM_VA_START);
    uint32_t a = n.bo(kSize), b = n.bo(kSize);
    REQUIRE(n.set_iova(a, va + kSize) == 0);
    uint64_t iova = 0;
    REQUIRE(n.info(a, MSM_INFO_GET_IOVA, &iova) == 0);
    CHECK(iova == va + kSize);
    CHECK(n.set_iova(b, va + kSize + kSize / 2) == -ENOSPC);
    CHECK(n.gem_close(a) == 0);
    CHECK(n.gem_close(b) == 0);
    CHECK(n.gem_close(b) == -EINVAL);

    auto lines = log_lines();
    char want[96];
    std::snprintf(want, sizeof want, "info=SET_IOVA handle=%u value=0x%llx", b,
                  static_cast<unsigned long long>(va + kSize + kSize / 2));
    CHECK(log_has(lines, "MSM_GEM_INFO", "-ENOSPC", want));
    std::snprintf(want, sizeof want, "info=SET_IOVA handle=%u value=0x%llx", a,
                  static_cast<unsigned long long>(va + kSize));
    CHECK(log_has(lines, "MSM_GEM_INFO", "0", want));
    CHECK(log_has(lines, "GEM_CLOSE", "-EINVAL", "handle=" + std::to_string(b)));
}

TEST_CASE("mmap at GET_OFFSET and mmap of the PRIME fd are the same memory") {
    Node n;
    uint32_t h = n.bo(kSize);
    uint64_t offset = 0;
    REQUIRE(n.info(h, MSM_INFO_GET_OFFSET, &offset) == 0);
    auto* p = static_cast<uint8_t*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, n.fd,
                                         static_cast<off_t>(offset)));
    REQUIRE(p != MAP_FAILED);
    std::memset(p, 0x5a, kSize);
    p[123] = 0x17;

    int prime = -1;
    REQUIRE(drmPrimeHandleToFD(n.fd, h, DRM_CLOEXEC | DRM_RDWR, &prime) == 0);
    REQUIRE(prime >= 0);
    auto* q = static_cast<uint8_t*>(mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, prime, 0));
    REQUIRE(q != MAP_FAILED);
    CHECK(q[0] == 0x5a);
    CHECK(q[123] == 0x17);
    CHECK(q[kSize - 1] == 0x5a);
    q[7] = 0x99; // and the other way round
    CHECK(p[7] == 0x99);

    uint32_t again = 0;
    REQUIRE(drmPrimeFDToHandle(n.fd, prime, &again) == 0);
    CHECK(again == h);

    // An offset that is no object of this file, and a length past the object.
    CHECK(mmap(nullptr, kSize, PROT_READ, MAP_SHARED, n.fd, static_cast<off_t>(offset + (1ull << 40))) ==
          MAP_FAILED);
    CHECK(mmap(nullptr, 2 * kSize, PROT_READ, MAP_SHARED, n.fd, static_cast<off_t>(offset)) == MAP_FAILED);
    CHECK(errno == EINVAL);

    CHECK(munmap(q, kSize) == 0);
    CHECK(munmap(p, kSize) == 0);
    close(prime);
    CHECK(n.gem_close(h) == 0);
    auto lines = log_lines();
    CHECK(log_has(lines, "PRIME_HANDLE_TO_FD", "0", "handle=" + std::to_string(h)));
    CHECK(log_has(lines, "MMAP", "0", "len=0x10000"));
    CHECK(log_has(lines, "MUNMAP", "0", "len=0x10000"));
}

TEST_CASE("A CPU mapping keeps the range reserved after GEM_CLOSE until munmap (classic era)") {
    Node n;
    uint64_t va = n.param(MSM_PARAM_VA_START) + 0x100000;
    uint32_t a = n.bo(kSize), b = n.bo(kSize);
    REQUIRE(n.set_iova(a, va) == 0);
    uint64_t offset = 0;
    REQUIRE(n.info(a, MSM_INFO_GET_OFFSET, &offset) == 0);
    void* p = mmap(nullptr, kSize, PROT_READ, MAP_SHARED, n.fd, static_cast<off_t>(offset));
    REQUIRE(p != MAP_FAILED);
    REQUIRE(n.gem_close(a) == 0);
    CHECK(n.set_iova(b, va) == -ENOSPC);
    REQUIRE(munmap(p, kSize) == 0);
    CHECK(n.set_iova(b, va) == 0);
    CHECK(n.gem_close(b) == 0);
}

TEST_CASE("GEM_SUBMIT with FENCE_FD_OUT returns an fd that becomes readable when the submit retires") {
    Node n;
    uint64_t va = n.param(MSM_PARAM_VA_START) + 0x200000;
    uint32_t cmd = n.bo(kSize);
    REQUIRE(n.set_iova(cmd, va) == 0);
    drm_msm_submitqueue q{0, 0, 0};
    REQUIRE(n.ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_NEW, &q) == 0);

    drm_msm_gem_submit_bo bo{MSM_SUBMIT_BO_READ, cmd, va};
    drm_msm_gem_submit_cmd c{};
    c.type = MSM_SUBMIT_CMD_BUF;
    c.submit_idx = 0;
    c.size = 16;
    drm_msm_gem_submit s{};
    s.flags = MSM_PIPE_3D0 | MSM_SUBMIT_FENCE_FD_OUT | MSM_SUBMIT_FENCE_SN_IN;
    s.fence = 7;
    s.nr_bos = 1;
    s.nr_cmds = 1;
    s.bos = reinterpret_cast<uintptr_t>(&bo);
    s.cmds = reinterpret_cast<uintptr_t>(&c);
    s.fence_fd = -1;
    s.queueid = q.id;
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(n.ioctl_err(DRM_IOCTL_MSM_GEM_SUBMIT, &s) == 0);
    REQUIRE(s.fence_fd >= 0);
    CHECK(s.fence == 7);
    // FDNC_SHIM_FENCE_DELAY_US=30000: not yet retired ...
    pollfd pfd{s.fence_fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 0) == 0);
    // ... and readable once the model's GPU clock retires it.
    REQUIRE(poll(&pfd, 1, 5000) == 1);
    CHECK((pfd.revents & POLLIN));
    auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(waited >= std::chrono::milliseconds(20));
    // The fence stays signalled (a sync_file does), also through a dup.
    int d = dup(s.fence_fd);
    pollfd pd{d, POLLIN, 0};
    CHECK(poll(&pd, 1, 0) == 1);
    close(d);
    close(s.fence_fd);

    drm_msm_wait_fence w{};
    w.fence = 7;
    w.queueid = q.id;
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_WAIT_FENCE, &w) == 0);
    uint32_t qid = q.id;
    CHECK(n.ioctl_err(DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE, &qid) == 0);
    CHECK(n.gem_close(cmd) == 0);
    CHECK(log_has(log_lines(), "MSM_GEM_SUBMIT", "0", "queue=" + std::to_string(q.id) + " fence=7 nr_bos=1 nr_cmds=1"));
}

TEST_CASE("A dup of the node fd is the same drm file; the file closes with its last fd") {
    Node n;
    uint32_t h = n.bo(kSize);
    int d = fcntl(n.fd, F_DUPFD_CLOEXEC, 100);
    REQUIRE(d >= 100);
    uint64_t flags = 0;
    drm_msm_gem_info a{h, MSM_INFO_GET_FLAGS, 0, 0, 0};
    CHECK(::ioctl(d, DRM_IOCTL_MSM_GEM_INFO, &a) == 0);
    flags = a.value;
    CHECK(flags == MSM_BO_WC);
    close(n.fd);
    n.fd = -1;
    CHECK(::ioctl(d, DRM_IOCTL_MSM_GEM_INFO, &a) == 0); // still open through the dup
    int d2 = dup(d);
    REQUIRE(d2 >= 0);
    close(d);
    CHECK(::ioctl(d2, DRM_IOCTL_MSM_GEM_INFO, &a) == 0);
    close(d2);
    CHECK(::ioctl(d2, DRM_IOCTL_MSM_GEM_INFO, &a) == -1);
    CHECK(errno == EBADF);
    auto lines = log_lines();
    CHECK(log_has(lines, "CLOSE", "0", "last=1 fd=" + std::to_string(d2)));
}

TEST_CASE("Every log line is NAME<TAB>result<TAB>details") {
    { Node n; } // at least an OPEN and a CLOSE
    std::regex line(R"(^[A-Z][A-Z0-9_x]*\t(0|-E[A-Z0-9]+)\t.*$)");
    auto lines = log_lines();
    REQUIRE(lines.size() > 10);
    for (const auto& l : lines) {
        INFO(l);
        CHECK(std::regex_match(l, line));
    }
    CHECK(log_has(lines, "OPEN", "0", "path=" + env_or_skip("FDNC_SHIM_NODE")));
    CHECK(log_has(lines, "VERSION", "0", "name=msm version=1.12.0"));
    CHECK(log_has(lines, "MSM_GET_PARAM", "0", "param=VA_START value=0x100000000"));
}

TEST_CASE("A bad setting aborts the process with one line naming the variable") {
    std::string shim = env_or_skip("FDNC_SHIM_PATH");
    int err[2];
    REQUIRE(pipe(err) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(err[1], 2);
        setenv("LD_PRELOAD", shim.c_str(), 1);
        setenv("FDNC_SHIM_ERA", "modern", 1);
        // This test binary itself (dynamically linked, unlike a static busybox `true` in the QEMU
        // guest, where the preload would be ignored); the shim aborts before main runs.
        execl("/proc/self/exe", "test_drm_shim", "[no-such-test]", static_cast<char*>(nullptr));
        _exit(127);
    }
    close(err[1]);
    std::string out;
    char buf[256];
    for (ssize_t k; (k = read(err[0], buf, sizeof buf)) > 0;)
        out.append(buf, static_cast<size_t>(k));
    close(err[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
    CHECK(out.find("FDNC_SHIM_ERA") != std::string::npos);
}

// ---- a host that dies says how (crash_report.cpp) ---------------------------------------------

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true; // the sanitizer runtime owns SIGSEGV (it reports overflows itself)
#else
constexpr bool kSanitized = false;
#endif

struct Death {
    std::string said; // what it wrote to stderr
    int status = 0;   // its wait status
    pid_t pid = -1;
};

// dying_host (a program without this test's framework, whose own fatal-signal handlers would
// answer first) run with the shim preloaded; `outside` runs once it is ready, with its pid.
template <typename Outside> Death run_dying_host(const char* how, Outside outside) {
    const std::string shim = env_or_skip("FDNC_SHIM_PATH");
    const std::string exe = env_or_skip("FDNC_DYING_HOST");
    int err[2], out[2];
    REQUIRE(pipe(err) == 0);
    REQUIRE(pipe(out) == 0);
    Death d;
    d.pid = fork();
    REQUIRE(d.pid >= 0);
    if (d.pid == 0) {
        dup2(err[1], 2);
        dup2(out[1], 1);
        setenv("LD_PRELOAD", shim.c_str(), 1);
        unsetenv("FDNC_SHIM_LOG");
        execl(exe.c_str(), "dying_host", how, static_cast<char*>(nullptr));
        _exit(127);
    }
    close(err[1]);
    close(out[1]);
    char buf[512];
    if (read(out[0], buf, sizeof buf) > 0) outside(d.pid);
    close(out[0]);
    for (ssize_t k; (k = read(err[0], buf, sizeof buf)) > 0;)
        d.said.append(buf, static_cast<size_t>(k));
    close(err[0]);
    REQUIRE(waitpid(d.pid, &d.status, 0) == d.pid);
    return d;
}

TEST_CASE("A process the shim lives in reports a fatal signal, who sent it, and still dies of it") {
    SECTION("a signal sent from outside names the sender's pid") {
        Death d = run_dying_host("signal", [](pid_t pid) { kill(pid, SIGTERM); });
        INFO(d.said);
        CHECK(WIFSIGNALED(d.status));
        CHECK(WTERMSIG(d.status) == SIGTERM);
        CHECK(d.said.find("pid " + std::to_string(d.pid) + " got a fatal signal: Terminated") != std::string::npos);
        CHECK(d.said.find("sent by pid " + std::to_string(getpid()) + ")") != std::string::npos);
    }
    SECTION("a trap instruction: SIGILL with its address and a backtrace") {
        Death d = run_dying_host("ill", [](pid_t) {});
        INFO(d.said);
        CHECK(WIFSIGNALED(d.status));
        CHECK(WTERMSIG(d.status) == SIGILL);
        CHECK(d.said.find("got a fatal signal: Illegal instruction") != std::string::npos);
        CHECK(d.said.find("address 0x") != std::string::npos);
        CHECK(d.said.find("dying_host") != std::string::npos); // the backtrace names the program
    }
    SECTION("a stack overflow on the main thread is still reported (alternate signal stack)") {
        if (kSanitized) return; // the sanitizer's SIGSEGV handler answers, as it should
        Death d = run_dying_host("overflow", [](pid_t) {});
        INFO(d.said);
        CHECK(WIFSIGNALED(d.status));
        CHECK(WTERMSIG(d.status) == SIGSEGV);
        CHECK(d.said.find("got a fatal signal: Segmentation fault") != std::string::npos);
    }
}

// ---- device enumeration: what libdrm (drmGetDevice2) and Mesa's loader read about the node ------

TEST_CASE("drmGetDevice2 finds the node as a platform device with a render node (libdrm enumeration)") {
    Node n;
    const std::string path = env_or_skip("FDNC_SHIM_NODE");
    drmDevicePtr dev = nullptr;
    REQUIRE(drmGetDevice2(n.fd, 0, &dev) == 0);
    REQUIRE(dev != nullptr);
    CHECK(dev->bustype == DRM_BUS_PLATFORM);
    REQUIRE((dev->available_nodes & (1 << DRM_NODE_RENDER)) != 0);
    CHECK(std::string(dev->nodes[DRM_NODE_RENDER]) == path);
    CHECK(std::string(dev->businfo.platform->fullname) == "/soc@0/gpu@5000000");
    REQUIRE(dev->deviceinfo.platform->compatible != nullptr);
    CHECK(std::string(dev->deviceinfo.platform->compatible[0]) == "qcom,adreno");
    drmFreeDevice(&dev);

    drmDevicePtr devs[8] = {};
    int count = drmGetDevices2(0, devs, 8);
    REQUIRE(count == 1); // only the node: other /dev/dri entries and 226:* minors are hidden
    CHECK(std::string(devs[0]->nodes[DRM_NODE_RENDER]) == path);
    drmFreeDevices(devs, count);

    char* name = drmGetRenderDeviceNameFromFd(n.fd);
    REQUIRE(name != nullptr);
    CHECK(std::string(name) == path);
    std::free(name);
}

TEST_CASE("The node's directory lists only the node; sysfs links resolve under /sys") {
    const std::string path = env_or_skip("FDNC_SHIM_NODE");
    const std::string dir = path.substr(0, path.rfind('/'));
    const std::string base = path.substr(path.rfind('/') + 1);
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    std::vector<std::string> names;
    while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
            names.push_back(e->d_name);
    closedir(d);
    CHECK(names == std::vector<std::string>{base});

    struct stat st {};
    REQUIRE(stat("/sys/dev/char/226:128/device/drm", &st) == 0); // drmNodeIsDRM
    CHECK(S_ISDIR(st.st_mode));
    CHECK(stat("/sys/dev/char/226:0", &st) == -1); // another DRM minor: hidden
    CHECK(errno == ENOENT);
    char buf[PATH_MAX];
    REQUIRE(realpath("/sys/dev/char/226:128/device/subsystem", buf) != nullptr);
    CHECK(std::string(buf) == "/sys/bus/platform");
    REQUIRE(realpath("/sys/dev/char/226:128", buf) != nullptr);
    CHECK(std::string(buf) == "/sys/devices/platform/fdnc-gpu.0/drm/" + base);
    ssize_t n = readlink("/sys/dev/char/226:128/device/driver", buf, sizeof buf - 1);
    REQUIRE(n > 0);
    buf[n] = '\0';
    CHECK(std::string(buf).substr(std::string(buf).rfind('/') + 1) == "msm");
    // The resolved name is served too (a caller may realpath first, then read).
    std::ifstream uevent("/sys/devices/platform/fdnc-gpu.0/uevent");
    std::string line;
    REQUIRE(std::getline(uevent, line));
    CHECK(line == "DRIVER=msm");
    FILE* f = fopen("/sys/dev/char/226:128/uevent", "r");
    REQUIRE(f != nullptr);
    char text[256] = {};
    CHECK(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    CHECK(std::string(text).find("DEVNAME=dri/" + base) != std::string::npos);
    // Paths that are not the node's are untouched.
    CHECK(realpath("/proc/self", buf) != nullptr);
    CHECK(std::string(buf).rfind("/proc/", 0) == 0);
}
