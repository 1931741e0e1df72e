#include "render_node.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <ftw.h>
#include <mutex>
#include <sys/stat.h>
#include <drm.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "guest_backend.h"
#include "host_backend.h"
#include "ioctl_log.h"
#include "virtio_proto/msm_uapi.h"
#include "shim_config.h"

namespace fdnc::shim {

using namespace fdnc::wire;

std::atomic<bool> RenderNode::ours_[RenderNode::kMaxFds];
std::atomic<RenderNode*> RenderNode::instance_{nullptr};

namespace {

template <typename F> F next(const char* name) {
    void* p = dlsym(RTLD_NEXT, name);
    if (!p) {
        std::fprintf(stderr, "fdnc drm_shim: dlsym(RTLD_NEXT, %s) failed\n", name);
        std::abort();
    }
    return reinterpret_cast<F>(p);
}

// drm_copy_field(): copy what fits, report the full length.
void copy_field(char* buf, __kernel_size_t* len, const std::string& value) {
    size_t n = std::min<size_t>(*len, value.size());
    if (buf && n)
        std::memcpy(buf, value.data(), n);
    *len = value.size();
}

// drm_ioctl.c drm_getcap(): render-only callers get these four; the rest is KMS.
int get_cap(drm_get_cap* c) {
    switch (c->capability) {
    case DRM_CAP_TIMESTAMP_MONOTONIC: c->value = 1; return 0;
    case DRM_CAP_PRIME: c->value = DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT; return 0;
    case DRM_CAP_SYNCOBJ:
    case DRM_CAP_SYNCOBJ_TIMELINE: c->value = 0; return 0; // not modelled (host_backend.h)
    default: return -EINVAL;
    }
}

// DRM_IOCTL_SET_CLIENT_NAME (6.13): at most 64 printable bytes without spaces.
int set_client_name(const uint64_t* a) {
    uint64_t len = a[0];
    const char* name = reinterpret_cast<const char*>(static_cast<uintptr_t>(a[1]));
    if (len > 64 || (len && !name))
        return -EINVAL;
    for (uint64_t i = 0; i < len; i++)
        if (name[i] <= 0x20 || name[i] >= 0x7f)
            return -EINVAL;
    return 0;
}

std::unique_ptr<Backend> make_backend(const ShimConfig& c) {
    if (c.backend == BackendKind::Guest)
        return std::make_unique<GuestBackend>(c);
    return std::make_unique<HostBackend>(c);
}

} // namespace

const Libc& libc() {
    static const Libc l{
        next<int (*)(const char*, int, ...)>("open"), next<int (*)(int)>("close"),
        next<int (*)(int)>("dup"),                    next<int (*)(int, int, int)>("dup3"),
        next<int (*)(int, int, ...)>("fcntl"),        next<int (*)(int, unsigned long, ...)>("ioctl"),
        next<void* (*)(void*, size_t, int, int, int, off_t)>("mmap"), next<int (*)(void*, size_t)>("munmap"),
    };
    return l;
}

RenderNode& RenderNode::get() {
    static RenderNode* node = [] {
        auto* n = new RenderNode(); // never destroyed: other threads may still use fds at exit
        instance_.store(n, std::memory_order_release);
        return n;
    }();
    return *node;
}

RenderNode::RenderNode() : backend_(make_backend(shim_config())), identity_(backend_->identity()) {}

bool RenderNode::is_node_path(const char* path) {
    return path && shim_config().node_path == path;
}

uint32_t RenderNode::node_minor() const { return shim_config().node_minor; }

void RenderNode::fake_stat(struct stat* st) const {
    std::memset(st, 0, sizeof *st);
    st->st_mode = S_IFCHR | 0666;
    st->st_rdev = makedev(kDrmMajor, node_minor());
    st->st_dev = makedev(0, 5); // devtmpfs-like
    st->st_ino = 0xfd0000 + node_minor();
    st->st_nlink = 1;
    st->st_blksize = 4096;
}

void RenderNode::register_fd(int fd, std::shared_ptr<File> file) {
    std::lock_guard lk(fd_mu_);
    fds_[fd] = std::move(file);
    ours_[fd].store(true, std::memory_order_release);
}

std::shared_ptr<RenderNode::File> RenderNode::file_of(int fd) {
    std::lock_guard lk(fd_mu_);
    auto it = fds_.find(fd);
    return it == fds_.end() ? nullptr : it->second;
}

int RenderNode::open(int flags) {
    // The fd number is held by a memfd; it stands for the node and nothing reads it.
    int fd = memfd_create("fdnc-drm-render-node", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0)
        return -errno;
    if (fd >= kMaxFds) {
        libc().close(fd);
        return -EMFILE;
    }
    auto file = std::make_shared<File>();
    file->backend = backend_.get();
    if (int e = backend_->open_file(&file->id)) {
        file->backend = nullptr;
        libc().close(fd);
        return e;
    }
    uint64_t id = file->id;
    register_fd(fd, std::move(file));
    log_event("OPEN", 0, "path=" + shim_config().node_path + " file=" + std::to_string(id) + " fd=" +
                             std::to_string(fd));
    return fd;
}

int RenderNode::close(int fd) {
    std::shared_ptr<File> file;
    {
        std::lock_guard lk(fd_mu_);
        auto it = fds_.find(fd);
        if (it == fds_.end())
            return -EBADF;
        file = std::move(it->second);
        fds_.erase(it);
        ours_[fd].store(false, std::memory_order_release);
    }
    int r = libc().close(fd);
    bool last = file.use_count() == 1;
    uint64_t id = file->id;
    file.reset(); // the last fd of an open closes the backend file (outside the lock)
    log_event("CLOSE", 0, "file=" + std::to_string(id) + " last=" + (last ? "1" : "0") + " fd=" +
                              std::to_string(fd));
    if (last)
        write_stats(); // also here: servers are usually ended by a signal, which skips exit handlers
    return r < 0 ? -errno : 0;
}

int RenderNode::dup(int oldfd, int newfd, int cloexec, int how) {
    auto file = file_of(oldfd);
    if (!file)
        return -EBADF;
    int fd;
    if (how == 0) {
        fd = libc().dup(oldfd);
    } else if (how == 1) {
        if (is_ours(newfd))
            close(newfd); // dup3 closes the target first
        fd = libc().dup3(oldfd, newfd, cloexec ? O_CLOEXEC : 0);
    } else {
        fd = libc().fcntl(oldfd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, newfd);
    }
    if (fd < 0)
        return -errno;
    if (fd >= kMaxFds) {
        libc().close(fd);
        return -EMFILE;
    }
    register_fd(fd, file);
    log_event("DUP", 0, "oldfd=" + std::to_string(oldfd) + " fd=" + std::to_string(fd));
    return fd;
}

int RenderNode::generic_ioctl(unsigned long request, void* arg, bool* handled) {
    *handled = true;
    switch (static_cast<uint32_t>(request)) {
    case DRM_IOCTL_VERSION: {
        auto* v = static_cast<drm_version*>(arg);
        v->version_major = identity_.major;
        v->version_minor = identity_.minor;
        v->version_patchlevel = identity_.patchlevel;
        copy_field(v->name, &v->name_len, identity_.name);
        copy_field(v->date, &v->date_len, identity_.date);
        copy_field(v->desc, &v->desc_len, identity_.desc);
        return 0;
    }
    case DRM_IOCTL_GET_CAP: return get_cap(static_cast<drm_get_cap*>(arg));
    // Not DRM_RENDER_ALLOW in drm_ioctls[]: a render node answers -EACCES (drm_ioctl_permit).
    case DRM_IOCTL_GET_UNIQUE:
    case DRM_IOCTL_SET_VERSION:
    case DRM_IOCTL_GEM_FLINK:
    case DRM_IOCTL_GEM_OPEN: return -EACCES;
    case DRM_IOCTL_SET_CLIENT_CAP: return -EINVAL;
    default: break;
    }
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) == 0xD1 && _IOC_SIZE(request) == 16)
        return set_client_name(static_cast<const uint64_t*>(arg));
    *handled = false;
    return 0;
}

// The DRM core dispatches a driver ioctl by its number alone and sizes the copies from the
// caller's and the driver's encodings (drm_ioctl.c: drm_ioctl()), so the direction bits a caller
// uses do not matter. virglrenderer 1.3's SET_DEBUGINFO sends SET_PARAM through
// drmCommandWriteRead (msm_renderer.c:975), i.e. DRM_IOWR 0xc0186441, where the uapi header says
// DRM_IOW 0x40186441: an exact-match switch would refuse what the kernel accepts.
static unsigned long canonical_request(unsigned long request) {
    static constexpr uint32_t kMsm[] = {
        DRM_IOCTL_MSM_GET_PARAM,    DRM_IOCTL_MSM_SET_PARAM,       DRM_IOCTL_MSM_GEM_NEW,
        DRM_IOCTL_MSM_GEM_INFO,     DRM_IOCTL_MSM_GEM_CPU_PREP,    DRM_IOCTL_MSM_GEM_CPU_FINI,
        DRM_IOCTL_MSM_GEM_SUBMIT,   DRM_IOCTL_MSM_WAIT_FENCE,      DRM_IOCTL_MSM_GEM_MADVISE,
        DRM_IOCTL_MSM_SUBMITQUEUE_NEW, DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE, DRM_IOCTL_MSM_SUBMITQUEUE_QUERY};
    for (uint32_t c : kMsm)
        if (_IOC_NR(c) == _IOC_NR(request) && _IOC_SIZE(c) == _IOC_SIZE(request) && _IOC_TYPE(c) == _IOC_TYPE(request))
            return c;
    return request;
}

int RenderNode::ioctl(int fd, unsigned long request, void* arg) {
    request = canonical_request(request);
    auto file = file_of(fd);
    if (!file)
        return -EBADF;
    int r;
    if (_IOC_TYPE(request) != DRM_IOCTL_BASE) {
        r = -ENOTTY;
    } else if (!arg && _IOC_SIZE(request)) {
        r = -EFAULT;
    } else {
        bool handled = false;
        r = generic_ioctl(request, arg, &handled);
        if (!handled)
            r = backend_->ioctl(file->id, request, arg);
    }
    log_ioctl(fd, request, arg, r);
    return r;
}

int RenderNode::mmap(int fd, void* addr, size_t len, int prot, int flags, off_t off, void** out) {
    auto file = file_of(fd);
    if (!file)
        return -EBADF;
    uint64_t token = 0;
    int r = backend_->mmap(file->id, addr, len, prot, flags, off, out, &token);
    if (r == 0) {
        std::lock_guard lk(map_mu_);
        maps_[reinterpret_cast<uintptr_t>(*out)] = {len, token};
        nmaps_.store(maps_.size(), std::memory_order_release);
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "offset=0x%llx len=0x%zx addr=%p fd=%d", static_cast<unsigned long long>(off),
                  len, r == 0 ? *out : nullptr, fd);
    log_event("MMAP", r, buf);
    return r;
}

// Only whole mappings of ours are tracked (what the renderer and libdrm do); a partial munmap of one
// is passed through and keeps the object referenced until the rest goes with a whole-range munmap.
bool RenderNode::munmap(void* addr, size_t len, int* result) {
    Mapping m;
    if (nmaps_.load(std::memory_order_acquire) == 0)
        return false;
    {
        std::lock_guard lk(map_mu_);
        auto it = maps_.find(reinterpret_cast<uintptr_t>(addr));
        if (it == maps_.end() || len < it->second.len)
            return false;
        m = it->second;
        maps_.erase(it);
        nmaps_.store(maps_.size(), std::memory_order_release);
    }
    *result = backend_->unmap(m.token, addr, len);
    char buf[96];
    std::snprintf(buf, sizeof buf, "addr=%p len=0x%zx", addr, len);
    log_event("MUNMAP", *result, buf);
    return true;
}

// ---- NodeFiles: the node's /dev directory and its sysfs, as a real directory tree -------------

namespace {

constexpr char kSysChar[] = "/sys/dev/char/226:";               // every DRM char device
constexpr char kDeviceDir[] = "/sys/devices/platform/fdnc-gpu.0"; // where the links resolve to

// `path` is `prefix` or below it (prefix followed by end or '/').
bool under(const char* path, const std::string& prefix) {
    return std::strncmp(path, prefix.data(), prefix.size()) == 0 &&
           (path[prefix.size()] == '\0' || path[prefix.size()] == '/');
}

std::string dir_of(const std::string& p) {
    auto slash = p.rfind('/');
    return slash == 0 || slash == std::string::npos ? std::string("/") : p.substr(0, slash);
}
std::string base_of(const std::string& p) { return p.substr(p.rfind('/') + 1); }

bool mkdirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i)
        if (i == path.size() || path[i] == '/')
            if (::mkdir(path.substr(0, i).c_str(), 0755) != 0 && errno != EEXIST)
                return false;
    return true;
}

bool write_file(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    libc().close(fd);
    return ok;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }

// DEVNAME is relative to /dev.
std::string devname_dir(const std::string& node_path) {
    std::string d = dir_of(node_path);
    return d.rfind("/dev/", 0) == 0 ? d.substr(5) : d.substr(1);
}

// Builds the tree under `dir` (fresh); false on any failure.
bool build_tree(const std::string& dir) {
    const ShimConfig& c = shim_config();
    const std::string minor = std::to_string(c.node_minor);
    const std::string node = base_of(c.node_path);
    const std::string dev = dir + kDeviceDir;
    const std::string minor_dir = dev + "/drm/" + node;
    bool ok = mkdirs(dir + dir_of(c.node_path)) && write_file(dir + c.node_path, "") &&
              mkdirs(minor_dir) && mkdirs(dir + "/sys/bus/platform/drivers/msm") &&
              mkdirs(dir + "/sys/class/drm") && mkdirs(dir + "/sys/dev/char");
    // The OF keys libdrm's platform bus reads (drmParseOFBusInfo / drmParseOFDeviceInfo).
    ok = ok && write_file(dev + "/uevent",
                          "DRIVER=msm\nOF_NAME=gpu\nOF_FULLNAME=/soc@0/gpu@5000000\n"
                          "OF_COMPATIBLE_0=qcom,adreno\nOF_COMPATIBLE_N=1\n"
                          "MODALIAS=of:NgpuT(null)Cqcom,adreno\n");
    ok = ok && ::symlink("../../../bus/platform", (dev + "/subsystem").c_str()) == 0 &&
         ::symlink("../../../bus/platform/drivers/msm", (dev + "/driver").c_str()) == 0;
    ok = ok && write_file(minor_dir + "/uevent", "MAJOR=226\nMINOR=" + minor + "\nDEVNAME=" +
                                                     devname_dir(c.node_path) + "/" + node +
                                                     "\nDEVTYPE=drm_minor\n") &&
         write_file(minor_dir + "/dev", "226:" + minor + "\n") &&
         ::symlink("../..", (minor_dir + "/device").c_str()) == 0 &&
         ::symlink("../../../../../class/drm", (minor_dir + "/subsystem").c_str()) == 0;
    const std::string rel = std::string("../..") + (kDeviceDir + 4) + "/drm/" + node;
    ok = ok && ::symlink(rel.c_str(), (dir + "/sys/class/drm/" + node).c_str()) == 0 &&
         ::symlink(rel.c_str(), (dir + "/sys/dev/char/226:" + minor).c_str()) == 0;
    return ok && write_file(dir + "/.complete", "");
}

// The tree's root (its realpath), built on first use; empty if it could not be made.
const std::string& tree() {
    static std::once_flag once;
    static std::string root;
    std::call_once(once, [] {
        const ShimConfig& c = shim_config();
        uint64_t h = 1469598103934665603ull; // FNV-1a of the node path and the layout version
        for (char ch : "v1:" + c.node_path)
            h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
        const char* tmp = std::getenv("TMPDIR");
        char name[96];
        std::snprintf(name, sizeof name, "/fdnc-drm-shim-%u-%u-%08llx", static_cast<unsigned>(getuid()),
                      c.node_minor, static_cast<unsigned long long>(h & 0xffffffffu));
        std::string final_dir = std::string(tmp && tmp[0] == '/' ? tmp : "/tmp") + name;
        if (::access((final_dir + "/.complete").c_str(), F_OK) != 0) {
            std::string work = final_dir + ".XXXXXX";
            if (!::mkdtemp(work.data()))
                return;
            ::chmod(work.c_str(), 0755);
            bool built = build_tree(work);
            // Another process may have won the race: keep its tree, drop ours.
            if (!built || ::rename(work.c_str(), final_dir.c_str()) != 0)
                ::nftw(work.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
            if (::access((final_dir + "/.complete").c_str(), F_OK) != 0) {
                std::fprintf(stderr, "fdnc drm_shim: cannot build %s: device enumeration will not "
                                     "find the node\n", final_dir.c_str());
                return;
            }
        }
        char real[PATH_MAX];
        if (::realpath(final_dir.c_str(), real))
            root = real;
    });
    return root;
}

} // namespace

thread_local int NodeFiles::RealPaths::depth_ = 0;

const char* NodeFiles::redirect(const char* path, char* buf, size_t len) {
    if (!path || path[0] != '/' || RealPaths::active())
        return path;
    bool ours = false;
    if (path[1] == 's') {
        ours = std::strncmp(path, kSysChar, sizeof kSysChar - 1) == 0 || under(path, kDeviceDir);
    } else {
        const ShimConfig& c = shim_config();
        static const std::string node_dir = dir_of(c.node_path);
        ours = node_dir != "/" && under(path, node_dir) && c.node_path != path;
    }
    if (!ours)
        return path;
    const std::string& root = tree();
    if (root.empty())
        return path;
    int n = std::snprintf(buf, len, "%s%s", root.c_str(), path);
    return n > 0 && static_cast<size_t>(n) < len ? buf : path;
}

void NodeFiles::unredirect(char* path, size_t len) {
    if (!path)
        return;
    const std::string& root = tree();
    if (root.empty() || !under(path, root))
        return;
    size_t rest = std::strlen(path) - root.size();
    std::memmove(path, path + root.size(), rest + 1);
    if (rest == 0 && len > 1) {
        path[0] = '/';
        path[1] = '\0';
    }
}

std::string NodeFiles::tree_root() { return tree(); }

} // namespace fdnc::shim
