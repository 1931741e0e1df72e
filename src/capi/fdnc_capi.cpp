// The public C API (include/fdnc/fdnc.h): a thin veneer over fd_bo. Opaque C types are the C++
// objects themselves; errors are negative errnos, reasons for a failed open in fdnc_last_error().
// libfdnc is built with hidden visibility: only what fdnc.h declares is exported.
#pragma GCC visibility push(default)
#include "fdnc/fdnc.h"
#pragma GCC visibility pop

#include <cerrno>
#include <cstring>
#include <string>

#include "capi/open_device.h"
#include "fd_bo/fd_bo.h"

using fdnc::Bo;
using fdnc::Device;
using fdnc::Pipe;
using fdnc::Submit;

static_assert(FDNC_BO_CACHED_COHERENT == fdnc::kBoCachedCoherent);
static_assert(FDNC_BO_GPUREADONLY == fdnc::kBoGpuReadonly);
static_assert(FDNC_BO_SCANOUT == fdnc::kBoScanout);
static_assert(FDNC_BO_SHARED == fdnc::kBoShared);
static_assert(FDNC_BO_NOMAP == fdnc::kBoNoMap);
static_assert(FDNC_BO_NOCACHE == fdnc::kBoNoCache);
static_assert(FDNC_SUBMIT_BO_READ == fdnc::wire::MSM_SUBMIT_BO_READ);
static_assert(FDNC_SUBMIT_BO_WRITE == fdnc::wire::MSM_SUBMIT_BO_WRITE);
static_assert(FDNC_SUBMIT_BO_DUMP == fdnc::wire::MSM_SUBMIT_BO_DUMP);
static_assert(FDNC_PREP_READ == fdnc::wire::MSM_PREP_READ);
static_assert(FDNC_PREP_WRITE == fdnc::wire::MSM_PREP_WRITE);
static_assert(FDNC_PREP_NOSYNC == fdnc::wire::MSM_PREP_NOSYNC);

struct fdnc_device {
    std::unique_ptr<Device> dev;
};

namespace {
thread_local std::string g_last_error;

void set_error(std::string s) { g_last_error = std::move(s); }
void set_errno_error(const char* what, int err) { set_error(std::string(what) + ": " + std::strerror(-err)); }

// The opaque C handles are the C++ objects themselves (fdnc_device excepted, which owns one).
Bo* to_bo(fdnc_bo* bo) { return reinterpret_cast<Bo*>(bo); }
fdnc_bo* to_c_bo(Bo* bo) { return reinterpret_cast<fdnc_bo*>(bo); }
Pipe* to_pipe(fdnc_pipe* pipe) { return reinterpret_cast<Pipe*>(pipe); }
fdnc_pipe* to_c_pipe(Pipe* pipe) { return reinterpret_cast<fdnc_pipe*>(pipe); }
Submit* to_submit(fdnc_submit* submit) { return reinterpret_cast<Submit*>(submit); }
fdnc_submit* to_c_submit(Submit* submit) { return reinterpret_cast<fdnc_submit*>(submit); }
} // namespace

extern "C" {

const char* fdnc_last_error(void) { return g_last_error.c_str(); }

fdnc_device* fdnc_device_open(const char* uri) {
    std::string err;
    auto dev = fdnc::open_device(uri ? uri : "", fdnc::DeviceOptions{}, &err);
    if (!dev) {
        set_error(err);
        return nullptr;
    }
    return new fdnc_device{std::move(dev)};
}

void fdnc_device_del(fdnc_device* dev) { delete dev; }

int fdnc_device_va_range(fdnc_device* dev, uint64_t* start, uint64_t* size) {
    if (!dev) return -EINVAL;
    if (start) *start = dev->dev->va_range_start();
    if (size) *size = dev->dev->va_range_size();
    return 0;
}

int fdnc_device_stats(fdnc_device* dev, fdnc_stats* out) {
    if (!dev || !out) return -EINVAL;
    fdnc::DeviceStats s = dev->dev->stats();
    *out = fdnc_stats{};
    out->host_waits = s.host_waits;
    out->host_waits_bo_new = s.bo_new_waits;
    out->faults = s.faults;
    out->async_errors = s.async_errors;
    out->ccmds = s.ccmds;
    out->batches = s.batches;
    out->bytes_sent = s.bytes_sent;
    out->bos_live = s.bos_live;
    out->bo_cache_hits = s.bo_cache_hits;
    out->bo_cache_misses = s.bo_cache_misses;
    out->suballocs = s.suballocs;
    out->submits = s.submits;
    out->va_live_bytes = s.va_live_bytes;
    out->va_quarantined_bytes = s.va_quarantined_bytes;
    out->va_peak_bytes = s.va_peak_bytes;
    out->va_largest_free_bytes = s.va_largest_free_bytes;
    out->context_lost = s.context_lost ? 1 : 0;
    return 0;
}

int fdnc_device_status(fdnc_device* dev) { return dev ? dev->dev->status() : -EINVAL; }

fdnc_bo* fdnc_bo_new(fdnc_device* dev, uint32_t size, uint32_t flags, const char* name) {
    if (!dev) return nullptr;
    int err = 0;
    Bo* bo = dev->dev->bo_new(size, flags, name, &err);
    if (!bo) set_errno_error("bo_new", err);
    return to_c_bo(bo);
}

uint64_t fdnc_bo_iova(fdnc_bo* bo) { return bo ? to_bo(bo)->iova() : 0; }
uint32_t fdnc_bo_size(fdnc_bo* bo) { return bo ? static_cast<uint32_t>(to_bo(bo)->size()) : 0; }

void* fdnc_bo_map(fdnc_bo* bo) {
    if (!bo) return nullptr;
    int err = 0;
    void* p = to_bo(bo)->map(&err);
    if (!p) set_errno_error("bo_map", err);
    return p;
}

int fdnc_bo_upload(fdnc_bo* bo, const void* src, uint32_t off, uint32_t len) {
    return bo && src ? to_bo(bo)->upload(src, off, len) : -EINVAL;
}

int fdnc_bo_cpu_prep(fdnc_bo* bo, fdnc_pipe* pipe, uint32_t op) {
    return bo ? to_bo(bo)->cpu_prep(to_pipe(pipe), op) : -EINVAL;
}

int fdnc_bo_set_name(fdnc_bo* bo, const char* name) { return bo ? to_bo(bo)->set_name(name) : -EINVAL; }

fdnc_bo* fdnc_bo_ref(fdnc_bo* bo) { return bo ? to_c_bo(to_bo(bo)->ref()) : nullptr; }

void fdnc_bo_del(fdnc_bo* bo) {
    if (bo) to_bo(bo)->unref();
}

int fdnc_bo_export_dmabuf(fdnc_bo* bo) { return bo ? to_bo(bo)->export_dmabuf() : -EINVAL; }

fdnc_bo* fdnc_bo_import_dmabuf(fdnc_device* dev, int fd) {
    if (!dev || fd < 0) return nullptr;
    int err = 0;
    Bo* bo = dev->dev->bo_import(fd, &err);
    if (!bo) set_errno_error("bo_import", err);
    return to_c_bo(bo);
}

fdnc_pipe* fdnc_pipe_new(fdnc_device* dev, uint32_t prio) {
    if (!dev) return nullptr;
    int err = 0;
    Pipe* p = dev->dev->pipe_new(prio, &err);
    if (!p) set_errno_error("pipe_new", err);
    return to_c_pipe(p);
}

void fdnc_pipe_del(fdnc_pipe* pipe) { delete to_pipe(pipe); }

int fdnc_pipe_wait(fdnc_pipe* pipe, uint32_t fence, int64_t timeout_ns) {
    return pipe ? to_pipe(pipe)->wait(fence, timeout_ns) : -EINVAL;
}

fdnc_submit* fdnc_submit_new(fdnc_pipe* pipe) {
    return pipe ? to_c_submit(new Submit(to_pipe(pipe))) : nullptr;
}

int fdnc_submit_add_bo(fdnc_submit* submit, fdnc_bo* bo, uint32_t flags) {
    if (!submit || !bo) return -EINVAL;
    int r = to_submit(submit)->add_bo(to_bo(bo), flags);
    return r < 0 ? r : 0;
}

int fdnc_submit_add_cmd(fdnc_submit* submit, fdnc_bo* bo, uint32_t offset, uint32_t size) {
    return submit && bo ? to_submit(submit)->add_cmd(to_bo(bo), offset, size) : -EINVAL;
}

int fdnc_submit_flush(fdnc_submit* submit, uint32_t* fence) {
    return submit ? to_submit(submit)->flush(fence) : -EINVAL;
}

void fdnc_submit_del(fdnc_submit* submit) { delete to_submit(submit); }

} // extern "C"
