// MsmKernel's public entry points: each runs the call (msm_kernel.cpp) and, when
// KernelConfig::call_log is set, reports it as one line in the drm_shim's log format
// ("NAME\tRESULT\tdetails"), so a model host's kernel log and the real host's (virglrenderer over
// the drm_shim) can be compared call for call by kind and result. map_object is what the real
// renderer does as two calls (GEM_INFO GET_OFFSET, then mmap of the drm fd): it logs both.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>

#include "msm_kernel.h"
#include "virtio_proto/msm_names.h"

namespace fdnc::host {

using namespace fdnc::wire;

namespace {

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string named(const char* name, uint32_t v) { return name ? name : fmt("0x%x", v); }

} // namespace

void MsmKernel::log_call(const char* name, int result, FileId f, const std::string& details) const {
    if (cfg_.call_log)
        cfg_.call_log(std::string(name) + "\t" + errno_name(result) + "\tfile=" + std::to_string(f) +
                      (details.empty() ? "" : " " + details));
}

FileId MsmKernel::open_file(bool per_process_vm) {
    const FileId f = open_file_call(per_process_vm);
    log_call("OPEN", 0, f, per_process_vm ? "" : "vm=global");
    return f;
}

void MsmKernel::close_file(FileId f) {
    close_file_call(f);
    log_call("CLOSE", 0, f, "");
}

int MsmKernel::get_param(FileId f, drm_msm_param& p) {
    const int r = get_param_call(f, p);
    log_call("MSM_GET_PARAM", r, f,
             "param=" + named(msm_param_name(p.param), p.param) + fmt(" value=0x%" PRIx64 " pipe=0x%x", p.value, p.pipe));
    return r;
}

int MsmKernel::set_param(FileId f, const drm_msm_param& p, std::span<const uint8_t> user) {
    const int r = set_param_call(f, p, user);
    log_call("MSM_SET_PARAM", r, f, "param=" + named(msm_param_name(p.param), p.param) + fmt(" len=%u", p.len));
    return r;
}

int MsmKernel::gem_new(FileId f, drm_msm_gem_new& a) {
    const int r = gem_new_call(f, a);
    log_call("MSM_GEM_NEW", r, f, fmt("size=0x%" PRIx64 " flags=0x%x handle=%u", a.size, a.flags, a.handle));
    return r;
}

int MsmKernel::gem_info(FileId f, drm_msm_gem_info& a, std::span<uint8_t> user) {
    const int r = gem_info_call(f, a, user);
    log_call("MSM_GEM_INFO", r, f,
             "info=" + named(msm_info_name(a.info), a.info) + fmt(" handle=%u value=0x%" PRIx64 " len=%u", a.handle, a.value, a.len));
    return r;
}

int MsmKernel::gem_close(FileId f, uint32_t handle) {
    const int r = gem_close_call(f, handle);
    log_call("GEM_CLOSE", r, f, fmt("handle=%u", handle));
    return r;
}

int MsmKernel::gem_cpu_prep(FileId f, const drm_msm_gem_cpu_prep& a) {
    const int r = gem_cpu_prep_call(f, a);
    log_call("MSM_GEM_CPU_PREP", r, f, fmt("handle=%u op=0x%x", a.handle, a.op));
    return r;
}

int MsmKernel::gem_cpu_fini(FileId f, uint32_t handle) {
    const int r = gem_cpu_fini_call(f, handle);
    log_call("MSM_GEM_CPU_FINI", r, f, fmt("handle=%u", handle));
    return r;
}

int MsmKernel::gem_submit(FileId f, drm_msm_gem_submit& a, std::span<const drm_msm_gem_submit_bo> bos,
                          std::span<const drm_msm_gem_submit_cmd> cmds, uint64_t* submit_seq) {
    const int r = gem_submit_call(f, a, bos, cmds, submit_seq);
    log_call("MSM_GEM_SUBMIT", r, f,
             fmt("queue=%u fence=%u nr_bos=%u nr_cmds=%u flags=0x%x", a.queueid, a.fence, a.nr_bos, a.nr_cmds, a.flags));
    return r;
}

int MsmKernel::wait_fence(FileId f, const drm_msm_wait_fence& a) {
    const int r = wait_fence_call(f, a);
    log_call("MSM_WAIT_FENCE", r, f, fmt("queue=%u fence=%u", a.queueid, a.fence));
    return r;
}

int MsmKernel::submitqueue_new(FileId f, drm_msm_submitqueue& a) {
    const int r = submitqueue_new_call(f, a);
    log_call("MSM_SUBMITQUEUE_NEW", r, f, fmt("flags=0x%x prio=%u queue=%u", a.flags, a.prio, a.id));
    return r;
}

int MsmKernel::submitqueue_close(FileId f, uint32_t id) {
    const int r = submitqueue_close_call(f, id);
    log_call("MSM_SUBMITQUEUE_CLOSE", r, f, fmt("queue=%u", id));
    return r;
}

int MsmKernel::submitqueue_query(FileId f, drm_msm_submitqueue_query& a, std::span<uint8_t> data) {
    const int r = submitqueue_query_call(f, a, data);
    log_call("MSM_SUBMITQUEUE_QUERY", r, f, fmt("queue=%u param=%u len=%u", a.id, a.param, a.len));
    return r;
}

int MsmKernel::prime_handle_to_fd(FileId f, uint32_t handle, int* fd) {
    const int r = prime_handle_to_fd_call(f, handle, fd);
    log_call("PRIME_HANDLE_TO_FD", r, f, fmt("handle=%u", handle));
    return r;
}

int MsmKernel::prime_fd_to_handle(FileId f, int fd, uint32_t* handle) {
    const int r = prime_fd_to_handle_call(f, fd, handle);
    log_call("PRIME_FD_TO_HANDLE", r, f, fmt("handle=%u", r == 0 ? *handle : 0));
    return r;
}

int MsmKernel::map_object(FileId f, uint32_t handle, void** ptr, uint64_t* size) {
    const int r = map_object_call(f, handle, ptr, size);
    log_call("MSM_GEM_INFO", r, f, fmt("info=GET_OFFSET handle=%u", handle));
    if (r == 0) log_call("MMAP", 0, f, fmt("len=0x%" PRIx64, *size));
    return r;
}

} // namespace fdnc::host
