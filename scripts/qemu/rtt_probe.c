/* Guest<->host round trip over virtio_gpu, measured the way Mesa's virtio backend (and fdnc's
 * virtgpu transport) waits for a synchronous request: scripts/qemu-ci.sh --mesa runs it in the guest.
 *
 *   rtt_probe /dev/dri/renderD128 [N]
 *
 * Opens a native context (GET_CAPS(6), CONTEXT_INIT capset 6 / 64 rings, the shared page as blob 0,
 * mapped), then N times (default 200, after 10 untimed): one MSM_CCMD_NOP ccmd by EXECBUFFER on ring 0
 * with VIRTGPU_EXECBUF_FENCE_FD_OUT, poll() on that fence fd, then until the shared page's seqno
 * reaches the request's (Mesa 25.0.7 src/virtio/vdrm/vdrm.c vdrm_send_req(sync=true) +
 * vdrm_host_sync). Also times N EXECBUFFERs of a NOP without a fence and without waiting (what a
 * buffered request costs the caller). Prints one line:
 *   FDNC-RTT: n=N sync_p50_us=.. sync_p99_us=.. sync_min_us=.. async_p50_us=.. async_p99_us=..
 * Exit 0, or 1 with the failing step on stderr. Needs no Mesa and no fdnc; the ioctl structs are
 * spelled out (the machine's libdrm headers predate context init). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct vg_map { uint64_t offset; uint32_t handle, pad; };
struct vg_execbuffer {
    uint32_t flags, size;
    uint64_t command, bo_handles;
    uint32_t num_bo_handles;
    int32_t fence_fd;
    uint32_t ring_idx, syncobj_stride, num_in_syncobjs, num_out_syncobjs;
    uint64_t in_syncobjs, out_syncobjs;
};
struct vg_get_caps { uint32_t cap_set_id, cap_set_ver; uint64_t addr; uint32_t size, pad; };
struct vg_create_blob {
    uint32_t blob_mem, blob_flags, bo_handle, res_handle;
    uint64_t size;
    uint32_t pad, cmd_size;
    uint64_t cmd, blob_id;
};
struct vg_ctx_param { uint64_t param, value; };
struct vg_context_init { uint32_t num_params, pad; uint64_t ctx_set_params; };
struct ccmd_req { uint32_t cmd, len, seqno, rsp_off; };

#define D(nr, type) _IOWR('d', 0x40 + (nr), type)
#define IOCTL_MAP D(0x01, struct vg_map)
#define IOCTL_EXECBUFFER D(0x02, struct vg_execbuffer)
#define IOCTL_GET_CAPS D(0x09, struct vg_get_caps)
#define IOCTL_CREATE_BLOB D(0x0a, struct vg_create_blob)
#define IOCTL_CONTEXT_INIT D(0x0b, struct vg_context_init)
#define FENCE_FD_OUT 0x02
#define RING_IDX 0x04
#define BLOB_MEM_HOST3D 0x0002
#define BLOB_FLAG_USE_MAPPABLE 0x0001
#define CAPSET_DRM 6
#define MSM_CCMD_NOP 1
#define SHMEM_SIZE 0x4000

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static double pct(double* v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

static int die(const char* what) {
    fprintf(stderr, "rtt_probe: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char** argv) {
    const char* node = argc > 1 ? argv[1] : "/dev/dri/renderD128";
    int n = argc > 2 ? atoi(argv[2]) : 200;
    if (n < 1) n = 1;
    int fd = open(node, O_RDWR | O_CLOEXEC);
    if (fd < 0) return die(node);
    uint8_t caps[256];
    struct vg_get_caps gc = {CAPSET_DRM, 0, (uintptr_t)caps, sizeof caps, 0};
    if (ioctl(fd, IOCTL_GET_CAPS, &gc)) return die("GET_CAPS(6)");
    struct vg_ctx_param params[] = {{1 /* CAPSET_ID */, CAPSET_DRM}, {2 /* NUM_RINGS */, 64}};
    struct vg_context_init ci = {2, 0, (uintptr_t)params};
    if (ioctl(fd, IOCTL_CONTEXT_INIT, &ci)) return die("CONTEXT_INIT");
    struct vg_create_blob cb = {.blob_mem = BLOB_MEM_HOST3D, .blob_flags = BLOB_FLAG_USE_MAPPABLE, .size = SHMEM_SIZE};
    if (ioctl(fd, IOCTL_CREATE_BLOB, &cb)) return die("RESOURCE_CREATE_BLOB (shared page)");
    struct vg_map mp = {0, cb.bo_handle, 0};
    if (ioctl(fd, IOCTL_MAP, &mp)) return die("MAP");
    volatile uint32_t* shmem = mmap(NULL, SHMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)mp.offset);
    if (shmem == MAP_FAILED) return die("mmap of the shared page");

    double* sync_us = calloc((size_t)n, sizeof(double));
    double* async_us = calloc((size_t)n, sizeof(double));
    uint32_t seqno = 0;
    for (int i = -10; i < n; i++) {
        struct ccmd_req req = {MSM_CCMD_NOP, sizeof req, ++seqno, 0};
        struct vg_execbuffer eb = {.flags = FENCE_FD_OUT | RING_IDX, .size = sizeof req, .command = (uintptr_t)&req,
                                   .fence_fd = -1, .ring_idx = 0};
        double t0 = now_us();
        if (ioctl(fd, IOCTL_EXECBUFFER, &eb)) return die("EXECBUFFER (sync NOP)");
        struct pollfd p = {eb.fence_fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1) return die("poll of the fence fd (10 s)");
        close(eb.fence_fd);
        double deadline = now_us() + 10e6;
        while ((int32_t)(shmem[0] - req.seqno) < 0)
            if (now_us() > deadline) {
                fprintf(stderr, "rtt_probe: the shared page's seqno stayed at %u (want %u)\n", shmem[0], req.seqno);
                return 1;
            }
        if (i >= 0) sync_us[i] = now_us() - t0;
    }
    for (int i = 0; i < n; i++) {
        struct ccmd_req req = {MSM_CCMD_NOP, sizeof req, ++seqno, 0};
        struct vg_execbuffer eb = {.flags = RING_IDX, .size = sizeof req, .command = (uintptr_t)&req, .fence_fd = -1};
        double t0 = now_us();
        if (ioctl(fd, IOCTL_EXECBUFFER, &eb)) return die("EXECBUFFER (async NOP)");
        async_us[i] = now_us() - t0;
    }
    double p50 = pct(sync_us, n, 50), p99 = pct(sync_us, n, 99), mn = sync_us[0];
    double a50 = pct(async_us, n, 50), a99 = pct(async_us, n, 99);
    printf("FDNC-RTT: n=%d sync_p50_us=%.0f sync_p99_us=%.0f sync_min_us=%.0f async_p50_us=%.0f async_p99_us=%.0f\n", n, p50,
           p99, mn, a50, a99);
    return 0;
}
