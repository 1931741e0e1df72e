/*
 * fdnc — freedreno native-context guest client: the public C API.
 *
 * Shaped like freedreno's fd_device / fd_bo / fd_pipe / fd_submit so a C driver can adopt it.
 * All types are opaque. Functions returning int return 0 (or a non-negative value) on success and
 * a negative errno on failure. bo_new never waits on the host: the buffer's GPU address (iova) is
 * chosen by the guest and its creation is queued ahead of any submit that uses it.
 */
#ifndef FDNC_FDNC_H
#define FDNC_FDNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fdnc_device;
struct fdnc_bo;
struct fdnc_pipe;
struct fdnc_submit;

/* Buffer flags (fdnc_bo_new). */
#define FDNC_BO_CACHED_COHERENT 0x00000001u /* CPU-cached and coherent (host permitting) */
#define FDNC_BO_GPUREADONLY     0x00000002u
#define FDNC_BO_SCANOUT         0x00000004u
#define FDNC_BO_SHARED          0x00000008u /* exportable as a dma-buf */
#define FDNC_BO_NOMAP           0x00000010u /* never mapped by the CPU */
#define FDNC_BO_NOCACHE         0x00000020u /* bypass the bo cache and suballocation */

/* Submit bo flags: the msm kernel's MSM_SUBMIT_BO_* values. */
#define FDNC_SUBMIT_BO_READ  0x0001u
#define FDNC_SUBMIT_BO_WRITE 0x0002u
#define FDNC_SUBMIT_BO_DUMP  0x0004u

/* cpu_prep ops: the msm kernel's MSM_PREP_* values. */
#define FDNC_PREP_READ   0x01u
#define FDNC_PREP_WRITE  0x02u
#define FDNC_PREP_NOSYNC 0x04u

struct fdnc_stats {
   uint64_t host_waits;          /* times the guest blocked on the host, all reasons */
   uint64_t host_waits_bo_new;   /* bo_new calls that blocked on the host, for any reason (the design keeps this 0) */
   uint64_t faults;              /* GPU faults reported by the host (shmem global_faults) */
   uint64_t async_errors;        /* shmem async_error */
   uint64_t ccmds;               /* requests sent */
   uint64_t batches;             /* transport calls carrying requests */
   uint64_t bytes_sent;          /* request bytes sent */
   uint64_t bos_live;            /* bos the client holds */
   uint64_t bo_cache_hits;
   uint64_t bo_cache_misses;
   uint64_t suballocs;           /* bo_new served by the suballocation heap */
   uint64_t submits;
   uint64_t va_live_bytes;       /* iova bytes allocated from the guest heap */
   uint64_t va_quarantined_bytes;/* freed iova bytes waiting for their submits to retire */
   uint64_t va_peak_bytes;
   uint64_t va_largest_free_bytes;
   uint64_t context_lost;        /* 1 once async_error was seen */
};

/* uri: "inproc", "inproc:rtt_us=200,gpu_us=50,va_size=4G", "vtest:/path/sock",
 * "virtgpu:/dev/dri/renderD128". NULL or "" means "inproc". Returns NULL on failure; the reason
 * is available through fdnc_last_error(). libfdnc links no host model: "inproc" works only with
 * libfdnc-inproc (the same API with fdnc's in-process host), and fails here saying so. */
struct fdnc_device *fdnc_device_open(const char *uri);
void fdnc_device_del(struct fdnc_device *dev);
const char *fdnc_last_error(void);
int fdnc_device_va_range(struct fdnc_device *dev, uint64_t *start, uint64_t *size);
int fdnc_device_stats(struct fdnc_device *dev, struct fdnc_stats *stats);
/* 0 while usable, -EIO once the host reported an asynchronous error (context lost). */
int fdnc_device_status(struct fdnc_device *dev);

struct fdnc_bo *fdnc_bo_new(struct fdnc_device *dev, uint32_t size, uint32_t flags, const char *name);
uint64_t fdnc_bo_iova(struct fdnc_bo *bo);
uint32_t fdnc_bo_size(struct fdnc_bo *bo);
void *fdnc_bo_map(struct fdnc_bo *bo);
int fdnc_bo_upload(struct fdnc_bo *bo, const void *src, uint32_t off, uint32_t len);
int fdnc_bo_cpu_prep(struct fdnc_bo *bo, struct fdnc_pipe *pipe, uint32_t op);
int fdnc_bo_set_name(struct fdnc_bo *bo, const char *name);
struct fdnc_bo *fdnc_bo_ref(struct fdnc_bo *bo);
void fdnc_bo_del(struct fdnc_bo *bo);
/* Returns a new dma-buf fd (caller closes it) or -errno. */
int fdnc_bo_export_dmabuf(struct fdnc_bo *bo);
/* NULL on failure; fdnc_last_error() names the errno: EIO context lost, EBADF fd is not a file,
 * EOPNOTSUPP the transport cannot import (vtest), EPIPE host gone, EINVAL size 0 or above 1 TiB,
 * ENOMEM no GPU address range left. */
struct fdnc_bo *fdnc_bo_import_dmabuf(struct fdnc_device *dev, int fd);

/* NULL on failure; fdnc_last_error() names the errno: EIO context lost, EBUSY all 64 pipes in use,
 * ETIMEDOUT the host did not answer (5 s), EPIPE host gone, EINVAL the host refused the queue. */
struct fdnc_pipe *fdnc_pipe_new(struct fdnc_device *dev, uint32_t prio);
void fdnc_pipe_del(struct fdnc_pipe *pipe);
/* 0 when signaled, -ETIMEDOUT, or another -errno. timeout_ns < 0 waits forever. */
int fdnc_pipe_wait(struct fdnc_pipe *pipe, uint32_t fence, int64_t timeout_ns);

struct fdnc_submit *fdnc_submit_new(struct fdnc_pipe *pipe);
int fdnc_submit_add_bo(struct fdnc_submit *submit, struct fdnc_bo *bo, uint32_t flags);
int fdnc_submit_add_cmd(struct fdnc_submit *submit, struct fdnc_bo *bo, uint32_t offset, uint32_t size);
/* Sends the submit; *fence receives its per-pipe seqno. The submit may then only be deleted. */
int fdnc_submit_flush(struct fdnc_submit *submit, uint32_t *fence);
void fdnc_submit_del(struct fdnc_submit *submit);

#ifdef __cplusplus
}
#endif

#endif /* FDNC_FDNC_H */
