// The libc entry points the fake render node needs (PROTOCOL.md §13.3 last bullet): every call on a
// path or fd that is not the node goes straight to the next definition (RTLD_NEXT), after one
// string compare or one atomic load. These are the only symbols the library exports (exports.map).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS // define open and open64, mmap and mmap64, ... as separate symbols
#include <cerrno>
#include <cstdarg>
#include <climits>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "crash_report.h"
#include "ioctl_log.h"
#include "render_node.h"
#include "shim_config.h"

using fdnc::shim::NodeFiles;
using fdnc::shim::RenderNode;

namespace {

template <typename F> F next(const char* name) {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
#define NEXT(name) static const auto real = next<decltype(&::name)>(#name)

int fail(int neg_errno) {
    errno = -neg_errno;
    return -1;
}

int ret(int r) { return r < 0 ? fail(r) : r; }

bool wants_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

int open_node(int flags) { return ret(RenderNode::get().open(flags)); }

// openat with an absolute path ignores dirfd; relative paths never name the node.
bool is_node(const char* path) { return path && path[0] == '/' && RenderNode::is_node_path(path); }

// fd + "" + AT_EMPTY_PATH names the fd itself. (`path` is declared nonnull by glibc, but callers
// pass NULL with AT_EMPTY_PATH on new kernels; read it through a volatile copy.)
bool is_empty_path_of_ours(int dirfd, const char* path, int flags) {
    const char* volatile p = path;
    return (flags & AT_EMPTY_PATH) && (!p || !p[0]) && RenderNode::is_ours(dirfd);
}

void fill_statx(struct statx* sx) {
    struct stat st;
    RenderNode::get().fake_stat(&st);
    std::memset(sx, 0, sizeof *sx);
    sx->stx_mask = STATX_BASIC_STATS;
    sx->stx_blksize = static_cast<uint32_t>(st.st_blksize);
    sx->stx_nlink = static_cast<uint32_t>(st.st_nlink);
    sx->stx_mode = static_cast<uint16_t>(st.st_mode);
    sx->stx_ino = st.st_ino;
    sx->stx_rdev_major = major(st.st_rdev);
    sx->stx_rdev_minor = minor(st.st_rdev);
    sx->stx_dev_major = major(st.st_dev);
    sx->stx_dev_minor = minor(st.st_dev);
}

int fake_stat(struct stat* st) {
    RenderNode::get().fake_stat(st);
    return 0;
}

// Read settings (and fail on a bad one) when the library is loaded, not at some later open().
__attribute__((constructor)) void shim_init() {
    (void)fdnc::shim::shim_config();
    fdnc::shim::install_crash_report();
}
__attribute__((destructor)) void shim_fini() { fdnc::shim::write_stats(); }

} // namespace

// glibc < 2.33 stat entry points (still exported for old binaries; not declared by new headers).
extern "C" {
int __xstat(int ver, const char* path, struct stat* st);
int __lxstat(int ver, const char* path, struct stat* st);
int __fxstat(int ver, int fd, struct stat* st);
int __fxstatat(int ver, int dirfd, const char* path, struct stat* st, int flags);
int __xstat64(int ver, const char* path, struct stat64* st);
int __lxstat64(int ver, const char* path, struct stat64* st);
int __fxstat64(int ver, int fd, struct stat64* st);
int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags);
int __open_2(const char* path, int flags);
int __open64_2(const char* path, int flags);
int __openat_2(int dirfd, const char* path, int flags);
int __openat64_2(int dirfd, const char* path, int flags);
int fcntl64(int fd, int cmd, ...);
}

#define EXPORT extern "C" __attribute__((visibility("default")))

// A path the node's files answer (its /dev directory, /sys/dev/char/226:*, the device's sysfs) is
// replaced by its place in NodeFiles' tree; every other path is passed on unchanged.
#define REDIRECT(path)                                                                              \
    char redirect_buf_[PATH_MAX];                                                                  \
    path = NodeFiles::redirect(path, redirect_buf_, sizeof redirect_buf_)

// ---- open -------------------------------------------------------------------------------------

#define OPEN_BODY(fn, ...)                                                                          \
    mode_t mode = 0;                                                                               \
    if (wants_mode(flags)) {                                                                       \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = va_arg(ap, mode_t);                                                                 \
        va_end(ap);                                                                                \
    }                                                                                              \
    if (is_node(path))                                                                             \
        return open_node(flags);                                                                   \
    REDIRECT(path);                                                                                \
    NEXT(fn);                                                                                      \
    return real(__VA_ARGS__, mode);

EXPORT int open(const char* path, int flags, ...) { OPEN_BODY(open, path, flags) }
EXPORT int open64(const char* path, int flags, ...) { OPEN_BODY(open64, path, flags) }
EXPORT int openat(int dirfd, const char* path, int flags, ...) { OPEN_BODY(openat, dirfd, path, flags) }
EXPORT int openat64(int dirfd, const char* path, int flags, ...) { OPEN_BODY(openat64, dirfd, path, flags) }

EXPORT int __open_2(const char* path, int flags) {
    if (is_node(path))
        return open_node(flags);
    REDIRECT(path);
    NEXT(__open_2);
    return real(path, flags);
}
EXPORT int __open64_2(const char* path, int flags) {
    if (is_node(path))
        return open_node(flags);
    REDIRECT(path);
    NEXT(__open64_2);
    return real(path, flags);
}
EXPORT int __openat_2(int dirfd, const char* path, int flags) {
    if (is_node(path))
        return open_node(flags);
    REDIRECT(path);
    NEXT(__openat_2);
    return real(dirfd, path, flags);
}
EXPORT int __openat64_2(int dirfd, const char* path, int flags) {
    if (is_node(path))
        return open_node(flags);
    REDIRECT(path);
    NEXT(__openat64_2);
    return real(dirfd, path, flags);
}

// ---- fds --------------------------------------------------------------------------------------

EXPORT int close(int fd) {
    if (RenderNode::is_ours(fd))
        return ret(RenderNode::get().close(fd));
    return fdnc::shim::libc().close(fd);
}

EXPORT int dup(int fd) {
    if (RenderNode::is_ours(fd))
        return ret(RenderNode::get().dup(fd, -1, 0, 0));
    return fdnc::shim::libc().dup(fd);
}

EXPORT int dup3(int oldfd, int newfd, int flags) {
    if (RenderNode::is_ours(oldfd)) {
        if (oldfd == newfd)
            return fail(-EINVAL);
        return ret(RenderNode::get().dup(oldfd, newfd, flags & O_CLOEXEC, 1));
    }
    if (RenderNode::is_ours(newfd) && oldfd != newfd)
        RenderNode::get().close(newfd); // the target is closed first, as dup3 does
    return fdnc::shim::libc().dup3(oldfd, newfd, flags);
}

EXPORT int dup2(int oldfd, int newfd) {
    if (oldfd == newfd) { // dup2 checks oldfd and returns it
        NEXT(dup2);
        return real(oldfd, newfd);
    }
    return dup3(oldfd, newfd, 0);
}

static int fcntl_impl(int fd, int cmd, void* arg) {
    if (RenderNode::is_ours(fd) && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
        return ret(RenderNode::get().dup(fd, static_cast<int>(reinterpret_cast<intptr_t>(arg)),
                                         cmd == F_DUPFD_CLOEXEC, 2));
    return fdnc::shim::libc().fcntl(fd, cmd, arg);
}

EXPORT int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    return fcntl_impl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    return fcntl_impl(fd, cmd, arg);
}

EXPORT int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    if (RenderNode::is_ours(fd))
        return ret(RenderNode::get().ioctl(fd, request, arg));
    return fdnc::shim::libc().ioctl(fd, request, arg);
}

// ---- memory -----------------------------------------------------------------------------------

EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (RenderNode::is_ours(fd)) {
        void* out = nullptr;
        int r = RenderNode::get().mmap(fd, addr, len, prot, flags, off, &out);
        if (r < 0) {
            errno = -r;
            return MAP_FAILED;
        }
        return out;
    }
    return fdnc::shim::libc().mmap(addr, len, prot, flags, fd, off);
}

EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) {
    return mmap(addr, len, prot, flags, fd, static_cast<off_t>(off));
}

EXPORT int munmap(void* addr, size_t len) {
    if (RenderNode* node = RenderNode::existing()) {
        int r = 0;
        if (node->munmap(addr, len, &r))
            return ret(r);
    }
    return fdnc::shim::libc().munmap(addr, len);
}

// ---- what a node looks like -------------------------------------------------------------------

EXPORT int access(const char* path, int mode) {
    if (is_node(path))
        return 0;
    REDIRECT(path);
    NEXT(access);
    return real(path, mode);
}

EXPORT int faccessat(int dirfd, const char* path, int mode, int flags) {
    if (is_node(path))
        return 0;
    REDIRECT(path);
    NEXT(faccessat);
    return real(dirfd, path, mode, flags);
}

EXPORT int stat(const char* path, struct stat* st) {
    if (is_node(path))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(stat);
    return real(path, st);
}

EXPORT int lstat(const char* path, struct stat* st) {
    if (is_node(path))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(lstat);
    return real(path, st);
}

EXPORT int fstat(int fd, struct stat* st) {
    if (RenderNode::is_ours(fd))
        return fake_stat(st);
    NEXT(fstat);
    return real(fd, st);
}

EXPORT int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
    if (is_node(path) ||
        is_empty_path_of_ours(dirfd, path, flags))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(fstatat);
    return real(dirfd, path, st, flags);
}

// struct stat64 has the layout of struct stat on 64-bit targets.
static_assert(sizeof(struct stat64) == sizeof(struct stat));

EXPORT int stat64(const char* path, struct stat64* st) {
    if (is_node(path))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(stat64);
    return real(path, st);
}

EXPORT int lstat64(const char* path, struct stat64* st) {
    if (is_node(path))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(lstat64);
    return real(path, st);
}

EXPORT int fstat64(int fd, struct stat64* st) {
    if (RenderNode::is_ours(fd))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    NEXT(fstat64);
    return real(fd, st);
}

EXPORT int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
    if (is_node(path) ||
        is_empty_path_of_ours(dirfd, path, flags))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(fstatat64);
    return real(dirfd, path, st, flags);
}

EXPORT int __xstat(int ver, const char* path, struct stat* st) {
    if (is_node(path))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(__xstat);
    return real(ver, path, st);
}

EXPORT int __lxstat(int ver, const char* path, struct stat* st) {
    if (is_node(path))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(__lxstat);
    return real(ver, path, st);
}

EXPORT int __fxstat(int ver, int fd, struct stat* st) {
    if (RenderNode::is_ours(fd))
        return fake_stat(st);
    NEXT(__fxstat);
    return real(ver, fd, st);
}

EXPORT int __fxstatat(int ver, int dirfd, const char* path, struct stat* st, int flags) {
    if (is_node(path))
        return fake_stat(st);
    REDIRECT(path);
    NEXT(__fxstatat);
    return real(ver, dirfd, path, st, flags);
}

EXPORT int __xstat64(int ver, const char* path, struct stat64* st) {
    if (is_node(path))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(__xstat64);
    return real(ver, path, st);
}

EXPORT int __lxstat64(int ver, const char* path, struct stat64* st) {
    if (is_node(path))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(__lxstat64);
    return real(ver, path, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64* st) {
    if (RenderNode::is_ours(fd))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    NEXT(__fxstat64);
    return real(ver, fd, st);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags) {
    if (is_node(path))
        return fake_stat(reinterpret_cast<struct stat*>(st));
    REDIRECT(path);
    NEXT(__fxstatat64);
    return real(ver, dirfd, path, st, flags);
}

EXPORT int statx(int dirfd, const char* path, int flags, unsigned int mask, struct statx* sx) {
    if (is_node(path) || is_empty_path_of_ours(dirfd, path, flags)) {
        fill_statx(sx);
        return 0;
    }
    REDIRECT(path);
    NEXT(statx);
    return real(dirfd, path, flags, mask, sx);
}

// ---- what libdrm's device enumeration reads (NodeFiles) -----------------------------------------
// glibc's fopen, opendir and realpath open paths through internal calls, so they are interposed
// themselves.

EXPORT FILE* fopen(const char* path, const char* mode) {
    REDIRECT(path);
    NEXT(fopen);
    return real(path, mode);
}

EXPORT FILE* fopen64(const char* path, const char* mode) {
    REDIRECT(path);
    NEXT(fopen64);
    return real(path, mode);
}

EXPORT DIR* opendir(const char* path) {
    REDIRECT(path);
    NEXT(opendir);
    return real(path);
}

// The tree's links are relative, so what readlink returns needs no mapping back.
EXPORT ssize_t readlink(const char* path, char* buf, size_t len) {
    REDIRECT(path);
    NEXT(readlink);
    return real(path, buf, len);
}

EXPORT ssize_t readlinkat(int dirfd, const char* path, char* buf, size_t len) {
    REDIRECT(path);
    NEXT(readlinkat);
    return real(dirfd, path, buf, len);
}

extern "C" ssize_t __readlink_chk(const char* path, char* buf, size_t len, size_t buflen);
extern "C" ssize_t __readlinkat_chk(int dirfd, const char* path, char* buf, size_t len, size_t buflen);
extern "C" char* __realpath_chk(const char* path, char* resolved, size_t resolvedlen);

EXPORT ssize_t __readlink_chk(const char* path, char* buf, size_t len, size_t buflen) {
    REDIRECT(path);
    NEXT(__readlink_chk);
    return real(path, buf, len, buflen);
}

EXPORT ssize_t __readlinkat_chk(int dirfd, const char* path, char* buf, size_t len, size_t buflen) {
    REDIRECT(path);
    NEXT(__readlinkat_chk);
    return real(dirfd, path, buf, len, buflen);
}

EXPORT char* realpath(const char* path, char* resolved) {
    const char* orig = path;
    REDIRECT(path);
    NEXT(realpath);
    char* r = real(path, resolved);
    if (r && path != orig)
        NodeFiles::unredirect(r, PATH_MAX);
    return r;
}

EXPORT char* __realpath_chk(const char* path, char* resolved, size_t resolvedlen) {
    const char* orig = path;
    REDIRECT(path);
    NEXT(__realpath_chk);
    char* r = real(path, resolved, resolvedlen);
    if (r && path != orig)
        NodeFiles::unredirect(r, resolvedlen);
    return r;
}

EXPORT char* canonicalize_file_name(const char* path) {
    const char* orig = path;
    REDIRECT(path);
    NEXT(canonicalize_file_name);
    char* r = real(path);
    if (r && path != orig)
        NodeFiles::unredirect(r, std::strlen(r) + 1);
    return r;
}
