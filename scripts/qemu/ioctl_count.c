/* Guest-side ioctl counter for scripts/qemu-ci.sh --host native (LD_PRELOAD in the guest): counts
 * every ioctl() by request and, at exit, writes "<name>=<count>" lines to $FDNC_IOCTL_COUNT_OUT.
 * Used to measure how many guest kernel calls one bo_new costs over the virtgpu transport, and
 * (--mesa) what Mesa's virtio backend and Mesa's msm backend on fdnc ask of the guest kernel.
 *
 * Names: virtio_gpu ioctls by their uAPI name (RESOURCE_CREATE_BLOB, EXECBUFFER, ...), msm ioctls as
 * MSM_*, core DRM ones as DRM_*, anything else as its hex request. Besides the plain counts:
 *   EXECBUFFER.sync    EXECBUFFER with VIRTGPU_EXECBUF_FENCE_FD_OUT on ring 0 (no GPU ring): a ccmd
 *                      whose caller waits for the host (Mesa's vdrm_send_req(sync=true))
 *   EXECBUFFER.submit  EXECBUFFER on a GPU ring (VIRTGPU_EXECBUF_RING_IDX, ring_idx > 0)
 *   EXECBUFFER.async   the rest (buffered ccmds flushed without a fence)
 *   mmap.drm / poll    mmap() of a /dev/dri fd (a host-visible blob: the guest kernel waits for the
 *                      host's RESOURCE_MAP_BLOB answer) / poll()+ppoll() calls (fence fd waits), with
 *                      the time spent in them (…_us)
 * With FDNC_IOCTL_COUNT_BYFD=1 each DRM-type ioctl is classified by what its fd is (a raw readlink
 * of /proc/self/fd/N, so an LD_PRELOADed drm shim cannot redirect it): on a real /dev/dri node the
 * name is kept, on anything else (a drm shim's fake node is a memfd) it gets the prefix "fake.";
 * "kernel_total" then counts the ioctls that reached a real node ("total" counts all).
 *
 * fdnc-glframes reads fdnc's device stats through dlsym(RTLD_DEFAULT, "fdnc_drm_shim_device_stats")
 * when its warm-up ends and after its last frame. This library exports that symbol too (preload it
 * first): it forwards to the next definition (fdnc's drm_shim, if preloaded) and appends its own
 * counts as "guest.<name>" keys, so the client's "measured" difference covers the measured frames
 * only — for Mesa's virtio backend too, which has no fdnc device. With FDNC_IOCTL_COUNT_MARK=LABEL
 * each such snapshot also writes "FDNC-IOCTL-MARK LABEL <n>" to /dev/console and then sleeps
 * FDNC_IOCTL_COUNT_MARK_MS (default 400) ms, so the host can note where its kernel model's log was
 * at that moment (scripts/qemu-ci.sh --mesa). The sleep happens outside the client's timed frames. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>


#define SLOTS 128
enum { K_EXEC_SYNC = 1, K_EXEC_SUBMIT, K_EXEC_ASYNC, K_MMAP_DRM, K_POLL, K_FAKE = 1UL << 63 };
/* Keys: a request code, K_FAKE | code for a fake node's ioctl, or a small pseudo key above. */
static struct { unsigned long key; unsigned long n; unsigned long ns; } counts[SLOTS];

static void count(unsigned long key, unsigned long ns) {
    for (int i = 0; i < SLOTS; i++) {
        unsigned long cur = __atomic_load_n(&counts[i].key, __ATOMIC_ACQUIRE);
        if (cur == 0 && __atomic_compare_exchange_n(&counts[i].key, &cur, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            cur = key;
        if (cur == key) {
            __atomic_add_fetch(&counts[i].n, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&counts[i].ns, ns, __ATOMIC_RELAXED);
            return;
        }
    }
}

static unsigned long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000000000UL + (unsigned long)ts.tv_nsec;
}

/* Names by the request's number only (struct sizes differ between uAPI versions): DRM_COMMAND_BASE
 * and above is the driver's range, virtio_gpu on a real node, msm on a fake one (the only drivers
 * met here); below it the core DRM ioctls. */
static const char* request_name(unsigned long req, int fake) {
    static const char* virtgpu[] = {"?", "MAP", "EXECBUFFER", "GETPARAM", "RESOURCE_CREATE", "RESOURCE_INFO",
                                    "TRANSFER_FROM_HOST", "TRANSFER_TO_HOST", "WAIT", "GET_CAPS",
                                    "RESOURCE_CREATE_BLOB", "CONTEXT_INIT"};
    static const char* msm[] = {"MSM_GET_PARAM", "MSM_SET_PARAM", "MSM_GEM_NEW", "MSM_GEM_INFO", "MSM_GEM_CPU_PREP",
                                "MSM_GEM_CPU_FINI", "MSM_GEM_SUBMIT", "MSM_WAIT_FENCE", "MSM_GEM_MADVISE", NULL,
                                "MSM_SUBMITQUEUE_NEW", "MSM_SUBMITQUEUE_CLOSE", "MSM_SUBMITQUEUE_QUERY"};
    unsigned nr = req & 0xff;
    if (((req >> 8) & 0xff) != 'd')
        return NULL;
    if (nr >= 0x40) {
        nr -= 0x40;
        if (fake)
            return nr < sizeof msm / sizeof msm[0] ? msm[nr] : NULL;
        return nr < sizeof virtgpu / sizeof virtgpu[0] ? virtgpu[nr] : NULL;
    }
    switch (nr) {
    case 0x00: return "DRM_VERSION";
    case 0x01: return "DRM_GET_UNIQUE";
    case 0x09: return "DRM_GEM_CLOSE";
    case 0x0c: return "DRM_GET_CAP";
    case 0x0d: return "DRM_SET_CLIENT_CAP";
    case 0x2d: return "DRM_PRIME_HANDLE_TO_FD";
    case 0x2e: return "DRM_PRIME_FD_TO_HANDLE";
    case 0xd1: return "DRM_SET_CLIENT_NAME";
    default: return NULL;
    }
}

static void key_name(unsigned long key, char* buf, size_t len) {
    static const char* pseudo[] = {"?", "EXECBUFFER.sync", "EXECBUFFER.submit", "EXECBUFFER.async", "mmap.drm", "poll"};
    if (key < sizeof pseudo / sizeof pseudo[0]) {
        snprintf(buf, len, "%s", pseudo[key]);
        return;
    }
    int fake = (key & K_FAKE) != 0;
    unsigned long req = key & ~K_FAKE;
    const char* name = request_name(req, fake);
    if (name)
        snprintf(buf, len, "%s%s", fake ? "fake." : "", name);
    else
        snprintf(buf, len, "%s0x%lx", fake ? "fake." : "", req);
}

/* struct drm_virtgpu_execbuffer up to ring_idx (linux 5.16+ uAPI; older kernels ignore the tail). */
struct execbuffer_head {
    uint32_t flags, size;
    uint64_t command, bo_handles;
    uint32_t num_bo_handles;
    int32_t fence_fd;
    uint32_t ring_idx;
};
#define EXECBUF_FENCE_FD_OUT 0x02
#define EXECBUF_RING_IDX 0x04

static int by_fd = -1;

/* 1 when fd is a real /dev/dri node (not a shim's memfd), read without going through libc. */
static int real_drm_fd(int fd) {
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    long n = syscall(SYS_readlink, path, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    return !strncmp(target, "/dev/dri/", 9);
}

int ioctl(int fd, unsigned long req, ...) {
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    va_start(ap, req);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    if (by_fd < 0) {
        const char* v = getenv("FDNC_IOCTL_COUNT_BYFD");
        by_fd = v && *v == '1';
    }
    unsigned long key = req;
    if (by_fd && ((req >> 8) & 0xff) == 'd' && !real_drm_fd(fd))
        key |= K_FAKE;
    count(key, 0);
    if (((req >> 8) & 0xff) == 'd' && (req & 0xff) == 0x42 && arg && !(key & K_FAKE)) { /* EXECBUFFER */
        const struct execbuffer_head* eb = arg;
        int ring = (eb->flags & EXECBUF_RING_IDX) ? (int)eb->ring_idx : 0;
        count(ring > 0 ? K_EXEC_SUBMIT : (eb->flags & EXECBUF_FENCE_FD_OUT) ? K_EXEC_SYNC : K_EXEC_ASYNC, 0);
    }
    return real(fd, req, arg);
}

void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
    static void* (*real)(void*, size_t, int, int, int, off_t);
    if (!real)
        real = (void* (*)(void*, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    if (fd < 0 || !real_drm_fd(fd))
        return real(addr, len, prot, flags, fd, off);
    unsigned long t0 = now_ns();
    void* r = real(addr, len, prot, flags, fd, off);
    count(K_MMAP_DRM, now_ns() - t0);
    return r;
}
void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) { return mmap(addr, len, prot, flags, fd, off); }

int poll(struct pollfd* fds, nfds_t n, int timeout) {
    static int (*real)(struct pollfd*, nfds_t, int);
    if (!real)
        real = (int (*)(struct pollfd*, nfds_t, int))dlsym(RTLD_NEXT, "poll");
    unsigned long t0 = now_ns();
    int r = real(fds, n, timeout);
    count(K_POLL, now_ns() - t0);
    return r;
}

int ppoll(struct pollfd* fds, nfds_t n, const struct timespec* tmo, const sigset_t* mask) {
    static int (*real)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*);
    if (!real)
        real = (int (*)(struct pollfd*, nfds_t, const struct timespec*, const sigset_t*))dlsym(RTLD_NEXT, "ppoll");
    unsigned long t0 = now_ns();
    int r = real(fds, n, tmo, mask);
    count(K_POLL, now_ns() - t0);
    return r;
}

/* "k":v,... of the counts (and the time of the timed ones) into buf; returns the length. */
static size_t format_counts(char* buf, size_t len, const char* key_prefix, const char* sep, const char* eq) {
    size_t off = 0;
    unsigned long total = 0, kernel = 0;
    char name[64];
    for (int i = 0; i < SLOTS && counts[i].key; i++) {
        key_name(counts[i].key, name, sizeof name);
        unsigned long n = __atomic_load_n(&counts[i].n, __ATOMIC_RELAXED);
        off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s%s%s%lu", off ? sep : "", key_prefix, name, eq, n);
        if (counts[i].key == K_MMAP_DRM || counts[i].key == K_POLL)
            off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s%s_us%s%lu", sep, key_prefix, name, eq,
                                    __atomic_load_n(&counts[i].ns, __ATOMIC_RELAXED) / 1000);
        if (counts[i].key > K_POLL) {
            total += n;
            if (!(counts[i].key & K_FAKE))
                kernel += n;
        }
    }
    off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%stotal%s%lu", off ? sep : "", key_prefix, eq, total);
    if (by_fd == 1)
        off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%skernel_total%s%lu", sep, key_prefix, eq, kernel);
    return off;
}

int fdnc_drm_shim_device_stats(char* buf, size_t len) {
    static int (*next)(char*, size_t);
    static int looked, marks;
    if (!looked) {
        next = (int (*)(char*, size_t))dlsym(RTLD_NEXT, "fdnc_drm_shim_device_stats");
        looked = 1;
    }
    const char* label = getenv("FDNC_IOCTL_COUNT_MARK");
    if (label && *label) {
        int c = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (c >= 0) {
            char line[160];
            int n = snprintf(line, sizeof line, "FDNC-IOCTL-MARK %s %d\n", label, ++marks);
            if (write(c, line, (size_t)n) < 0) { /* the mark is best effort */ }
            close(c);
        }
        const char* ms = getenv("FDNC_IOCTL_COUNT_MARK_MS");
        long wait_ms = ms && *ms ? strtol(ms, NULL, 10) : 400;
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* The next definition's object, then ours inside the same braces. */
    char inner[8192];
    int n = next ? next(inner, sizeof inner) : -ENODEV;
    size_t head = 0;
    if (n > 0 && (size_t)n < sizeof inner && inner[n - 1] == '}') {
        head = (size_t)n - 1;
        while (head > 0 && (inner[head - 1] == ' ' || inner[head - 1] == '\n'))
            head--;
    } else {
        inner[0] = '{';
        head = 1;
    }
    char own[6144];
    size_t m = format_counts(own, sizeof own, "\"guest.", ",", "\":");
    if (m >= sizeof own)
        return -ENOSPC;
    return snprintf(buf, len, "%.*s%s%s}", (int)head, inner, head > 1 ? "," : "", own);
}

__attribute__((destructor)) static void dump(void) {
    const char* out = getenv("FDNC_IOCTL_COUNT_OUT");
    FILE* f = out ? fopen(out, "w") : NULL;
    if (!f)
        return;
    char buf[6144];
    format_counts(buf, sizeof buf, "", "\n", "=");
    fprintf(f, "%s\n", buf);
    fclose(f);
}
