// RenderNode: the fake DRM render node inside this process: which fds are ours (each backed by a
// memfd so the number is reserved by the real kernel), which backend file each fd is an open of
// (dup'd fds share one; the file closes with its last fd), the mappings made through the node, and
// the generic ioctls that describe a node (VERSION, GET_CAP, GET_UNIQUE, SET_CLIENT_NAME).
// Everything else goes to the backend.
//
// Locking: `is_ours()` is a lock-free bitmap read, so the interposed libc calls cost one atomic load
// for fds that are not ours (and host_sim's own close/fcntl/stat calls never take a shim lock). The
// fd table and the mapping table each have a leaf mutex: no backend call and no interposed function
// runs while one is held.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <sys/stat.h>
#include <sys/types.h>
#include <string>
#include <unordered_map>

#include "backend.h"

namespace fdnc::shim {

// The real libc functions (RTLD_NEXT), for the shim's own use.
struct Libc {
    int (*open)(const char*, int, ...);
    int (*close)(int);
    int (*dup)(int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*ioctl)(int, unsigned long, ...);
    void* (*mmap)(void*, size_t, int, int, int, off_t);
    int (*munmap)(void*, size_t);
};
const Libc& libc();

class RenderNode {
public:
    static constexpr int kMaxFds = 1 << 16;
    static constexpr unsigned kDrmMajor = 226;

    static RenderNode& get(); // first call reads the settings and creates the backend
    static RenderNode* existing() { return instance_.load(std::memory_order_acquire); } // or nullptr

    // True when `path` names the node (FDNC_SHIM_NODE). Cheap; does not create the backend.
    static bool is_node_path(const char* path);
    // True when fd is one of ours. Lock-free.
    static bool is_ours(int fd) {
        return fd >= 0 && fd < kMaxFds && ours_[fd].load(std::memory_order_acquire);
    }

    int open(int flags);                          // new fd or -errno
    int close(int fd);                            // 0 or -errno (fd must be ours)
    int dup(int oldfd, int newfd, int cloexec, int how); // how: 0 dup, 1 dup3, 2 F_DUPFD(newfd = min)
    int ioctl(int fd, unsigned long request, void* arg); // 0 or -errno
    int mmap(int fd, void* addr, size_t len, int prot, int flags, off_t off, void** out);
    bool munmap(void* addr, size_t len, int* result); // false: not a mapping of ours
    void fake_stat(struct stat* st) const;        // a char device 226:minor
    Backend* backend() { return backend_.get(); }
    uint32_t node_minor() const;

private:
    struct File {
        BackendFile id = 0;
        Backend* backend = nullptr;
        ~File() { backend->close_file(id); }
    };
    struct Mapping {
        size_t len = 0;
        uint64_t token = 0;
    };
    RenderNode();
    std::shared_ptr<File> file_of(int fd);
    void register_fd(int fd, std::shared_ptr<File> file);
    int generic_ioctl(unsigned long request, void* arg, bool* handled);

    static std::atomic<bool> ours_[kMaxFds];
    static std::atomic<RenderNode*> instance_;
    std::atomic<size_t> nmaps_{0}; // munmap of other memory skips the lock when 0
    std::unique_ptr<Backend> backend_;
    NodeIdentity identity_;
    std::mutex fd_mu_;
    std::unordered_map<int, std::shared_ptr<File>> fds_;
    std::mutex map_mu_;
    std::map<uintptr_t, Mapping> maps_;
};

// NodeFiles: what libdrm's device enumeration (drmGetDevice2/drmGetDevices2, drmNodeIsDRM,
// drmParseSubsystemType, the platform bus's uevent) and Mesa's loader read about a node, served from
// a small real directory tree outside the checkout (`$TMPDIR` or /tmp,
// `fdnc-drm-shim-<uid>-<minor>-<hash>`, built once, atomically, and reused; contents depend only on
// the node path). Path-based libc calls on
//   - the node's directory (`/dev/dri`): lists only the node (other entries are hidden);
//   - `/sys/dev/char/226:*`: only the node's minor exists, as a platform device bound to `msm`
//     (uevent with DRIVER and OF_* keys, `subsystem` -> bus/platform, `drm/renderDN`);
//   - `/sys/devices/platform/fdnc-gpu.0` (where those links resolve to)
// are redirected into the tree; realpath/readlink results are mapped back to the /sys names.
class NodeFiles {
public:
    // While one lives on a thread, that thread's path-based calls are not redirected: the guest
    // backend opens the real device it runs over (virtgpu:/dev/dri/renderD128 beside a fake
    // /dev/dri/renderD129) through the same interposed libc.
    class RealPaths {
    public:
        RealPaths() { depth_++; }
        ~RealPaths() { depth_--; }
        RealPaths(const RealPaths&) = delete;
        RealPaths& operator=(const RealPaths&) = delete;
        static bool active() { return depth_ > 0; }

    private:
        static thread_local int depth_;
    };

    // `path` itself when not one of ours (cheap: a prefix compare), else the tree's path in `buf`.
    // The node path itself is not redirected (open/stat of it are the node).
    static const char* redirect(const char* path, char* buf, size_t len);
    // A path inside the tree (a realpath/readlink result) back to the name outside; in place.
    static void unredirect(char* path, size_t len);
    static std::string tree_root(); // for tests and the log; creates the tree
};

} // namespace fdnc::shim
