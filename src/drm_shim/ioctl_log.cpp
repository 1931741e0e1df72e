#include "ioctl_log.h"

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <drm.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <unistd.h>

#include "shim_config.h"
#include "virtio_proto/msm_names.h"
#include "virtio_proto/msm_uapi.h"

namespace fdnc::shim {

using namespace fdnc::wire;

namespace {

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string named(const char* name, uint32_t v) { return name ? name : fmt("0x%x", v); }

// A user string for the log: printable ASCII only, at most 64 bytes.
std::string user_string(uint64_t ptr, uint64_t len) {
    std::string s;
    const char* p = reinterpret_cast<const char*>(static_cast<uintptr_t>(ptr));
    for (uint64_t i = 0; p && i < len && i < 64 && p[i]; i++)
        s.push_back(p[i] > 0x20 && p[i] < 0x7f ? p[i] : '_');
    return s;
}

struct Sink {
    std::mutex mu;
    int log_fd = -1;
    bool stats = false;
    std::map<std::string, std::pair<uint64_t, uint64_t>> counts; // name -> (calls, failures)
    std::map<std::string, uint64_t> errors;                       // "NAME -EFOO" -> count

    Sink() {
        const ShimConfig& c = shim_config();
        if (!c.log_path.empty()) {
            log_fd = ::open(c.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (log_fd < 0) {
                std::fprintf(stderr, "fdnc drm_shim: bad FDNC_SHIM_LOG=\"%s\": %s\n", c.log_path.c_str(),
                             std::strerror(errno));
                std::abort();
            }
        }
        stats = !c.stats_path.empty();
    }

    void emit(const char* name, int result, const std::string& details) {
        if (log_fd < 0 && !stats)
            return;
        std::string line = std::string(name) + "\t" + errno_name(result) + "\t" + details + "\n";
        std::lock_guard lk(mu);
        if (stats) {
            auto& c = counts[name];
            c.first++;
            if (result < 0) {
                c.second++;
                errors[std::string(name) + " " + errno_name(result)]++;
            }
        }
        if (log_fd >= 0) {
            const char* p = line.data();
            size_t left = line.size();
            while (left) {
                ssize_t n = ::write(log_fd, p, left);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    break;
                p += n;
                left -= static_cast<size_t>(n);
            }
        }
    }
};

Sink& sink() {
    static Sink* s = new Sink(); // never destroyed: fence threads may log during exit
    return *s;
}

} // namespace

const char* ioctl_name(unsigned long request) {
    switch (static_cast<uint32_t>(request)) {
    case DRM_IOCTL_VERSION: return "VERSION";
    case DRM_IOCTL_GET_UNIQUE: return "GET_UNIQUE";
    case DRM_IOCTL_GET_CAP: return "GET_CAP";
    case DRM_IOCTL_SET_CLIENT_CAP: return "SET_CLIENT_CAP";
    case DRM_IOCTL_SET_VERSION: return "SET_VERSION";
    case DRM_IOCTL_GEM_CLOSE: return "GEM_CLOSE";
    case DRM_IOCTL_PRIME_HANDLE_TO_FD: return "PRIME_HANDLE_TO_FD";
    case DRM_IOCTL_PRIME_FD_TO_HANDLE: return "PRIME_FD_TO_HANDLE";
    case DRM_IOCTL_MSM_GET_PARAM: return "MSM_GET_PARAM";
    case DRM_IOCTL_MSM_SET_PARAM: return "MSM_SET_PARAM";
    case DRM_IOCTL_MSM_GEM_NEW: return "MSM_GEM_NEW";
    case DRM_IOCTL_MSM_GEM_INFO: return "MSM_GEM_INFO";
    case DRM_IOCTL_MSM_GEM_CPU_PREP: return "MSM_GEM_CPU_PREP";
    case DRM_IOCTL_MSM_GEM_CPU_FINI: return "MSM_GEM_CPU_FINI";
    case DRM_IOCTL_MSM_GEM_SUBMIT: return "MSM_GEM_SUBMIT";
    case DRM_IOCTL_MSM_WAIT_FENCE: return "MSM_WAIT_FENCE";
    case DRM_IOCTL_MSM_GEM_MADVISE: return "MSM_GEM_MADVISE";
    case DRM_IOCTL_MSM_SUBMITQUEUE_NEW: return "MSM_SUBMITQUEUE_NEW";
    case DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE: return "MSM_SUBMITQUEUE_CLOSE";
    case DRM_IOCTL_MSM_SUBMITQUEUE_QUERY: return "MSM_SUBMITQUEUE_QUERY";
    default: break;
    }
    // DRM_IOCTL_SET_CLIENT_NAME (drm uapi 6.13: DRM_IOWR(0xD1, {u64 name_len; u64 name})).
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) == 0xD1)
        return "SET_CLIENT_NAME";
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) >= 0xBF && _IOC_NR(request) <= 0xCD)
        return "SYNCOBJ";
    return nullptr;
}

std::string ioctl_details(unsigned long request, const void* arg) {
    if (!arg)
        return "arg=NULL";
    switch (static_cast<uint32_t>(request)) {
    case DRM_IOCTL_VERSION: {
        // libdrm asks twice: lengths first (name == NULL), then the strings.
        auto* v = static_cast<const drm_version*>(arg);
        std::string name = v->name ? user_string(reinterpret_cast<uintptr_t>(v->name), v->name_len)
                                   : fmt("(len %zu)", static_cast<size_t>(v->name_len));
        return fmt("name=%s version=%d.%d.%d", name.c_str(), v->version_major, v->version_minor,
                   v->version_patchlevel);
    }
    case DRM_IOCTL_GET_CAP: {
        auto* c = static_cast<const drm_get_cap*>(arg);
        return fmt("cap=0x%" PRIx64 " value=%" PRIu64, static_cast<uint64_t>(c->capability),
                   static_cast<uint64_t>(c->value));
    }
    case DRM_IOCTL_GEM_CLOSE: return fmt("handle=%u", static_cast<const drm_gem_close*>(arg)->handle);
    case DRM_IOCTL_PRIME_HANDLE_TO_FD:
    case DRM_IOCTL_PRIME_FD_TO_HANDLE: {
        auto* p = static_cast<const drm_prime_handle*>(arg);
        return fmt("handle=%u flags=0x%x prime_fd=%d", p->handle, p->flags, p->fd);
    }
    case DRM_IOCTL_MSM_GET_PARAM:
    case DRM_IOCTL_MSM_SET_PARAM: {
        auto* p = static_cast<const drm_msm_param*>(arg);
        return fmt("param=%s value=0x%" PRIx64 " len=%u pipe=0x%x", named(msm_param_name(p->param), p->param).c_str(),
                   p->value, p->len, p->pipe);
    }
    case DRM_IOCTL_MSM_GEM_NEW: {
        auto* a = static_cast<const drm_msm_gem_new*>(arg);
        return fmt("size=0x%" PRIx64 " flags=0x%x handle=%u", a->size, a->flags, a->handle);
    }
    case DRM_IOCTL_MSM_GEM_INFO: {
        auto* a = static_cast<const drm_msm_gem_info*>(arg);
        std::string s = fmt("info=%s handle=%u", named(msm_info_name(a->info), a->info).c_str(), a->handle);
        if (a->info == MSM_INFO_SET_NAME)
            return s + " name=" + user_string(a->value, a->len) + fmt(" len=%u", a->len);
        return s + fmt(" value=0x%" PRIx64 " len=%u", a->value, a->len);
    }
    case DRM_IOCTL_MSM_GEM_CPU_PREP: {
        auto* a = static_cast<const drm_msm_gem_cpu_prep*>(arg);
        return fmt("handle=%u op=0x%x timeout=%" PRId64 ".%09" PRId64, a->handle, a->op,
                   static_cast<int64_t>(a->timeout.tv_sec), static_cast<int64_t>(a->timeout.tv_nsec));
    }
    case DRM_IOCTL_MSM_GEM_CPU_FINI:
        return fmt("handle=%u", static_cast<const drm_msm_gem_cpu_fini*>(arg)->handle);
    case DRM_IOCTL_MSM_GEM_SUBMIT: {
        auto* a = static_cast<const drm_msm_gem_submit*>(arg);
        return fmt("queue=%u fence=%u nr_bos=%u nr_cmds=%u flags=0x%x fence_fd=%d", a->queueid, a->fence,
                   a->nr_bos, a->nr_cmds, a->flags, a->fence_fd);
    }
    case DRM_IOCTL_MSM_WAIT_FENCE: {
        auto* a = static_cast<const drm_msm_wait_fence*>(arg);
        return fmt("queue=%u fence=%u flags=0x%x timeout=%" PRId64 ".%09" PRId64, a->queueid, a->fence, a->flags,
                   static_cast<int64_t>(a->timeout.tv_sec), static_cast<int64_t>(a->timeout.tv_nsec));
    }
    case DRM_IOCTL_MSM_GEM_MADVISE: {
        auto* a = static_cast<const drm_msm_gem_madvise*>(arg);
        return fmt("handle=%u madv=%u retained=%u", a->handle, a->madv, a->retained);
    }
    case DRM_IOCTL_MSM_SUBMITQUEUE_NEW: {
        auto* a = static_cast<const drm_msm_submitqueue*>(arg);
        return fmt("flags=0x%x prio=%u queue=%u", a->flags, a->prio, a->id);
    }
    case DRM_IOCTL_MSM_SUBMITQUEUE_CLOSE: return fmt("queue=%u", *static_cast<const uint32_t*>(arg));
    case DRM_IOCTL_MSM_SUBMITQUEUE_QUERY: {
        auto* a = static_cast<const drm_msm_submitqueue_query*>(arg);
        return fmt("queue=%u param=%u len=%u", a->id, a->param, a->len);
    }
    default: break;
    }
    if (_IOC_TYPE(request) == DRM_IOCTL_BASE && _IOC_NR(request) == 0xD1) {
        auto* n = static_cast<const uint64_t*>(arg); // {name_len, name}
        return "name=" + user_string(n[1], n[0]);
    }
    return fmt("request=0x%lx nr=0x%x size=%u", request, static_cast<unsigned>(_IOC_NR(request)), static_cast<unsigned>(_IOC_SIZE(request)));
}

bool log_enabled() {
    Sink& s = sink();
    return s.log_fd >= 0 || s.stats;
}

void log_ioctl(int fd, unsigned long request, const void* arg, int result) {
    if (!log_enabled())
        return;
    const char* name = ioctl_name(request);
    std::string owned;
    if (!name) {
        owned = fmt("IOCTL_0x%08lx", request);
        name = owned.c_str();
    } else if (std::strcmp(name, "SYNCOBJ") == 0) {
        owned = fmt("SYNCOBJ_0x%02x", static_cast<unsigned>(_IOC_NR(request)));
        name = owned.c_str();
    }
    sink().emit(name, result, ioctl_details(request, arg) + fmt(" fd=%d", fd));
}

void log_event(const char* name, int result, const std::string& details) {
    if (!log_enabled())
        return;
    sink().emit(name, result, details);
}

void write_stats() {
    const ShimConfig& c = shim_config();
    if (c.stats_path.empty())
        return;
    Sink& s = sink();
    std::lock_guard lk(s.mu);
    std::string json = "{\n  \"ioctls\": {";
    bool first = true;
    uint64_t total = 0, failed = 0;
    for (auto& [name, cf] : s.counts) {
        json += fmt("%s\n    \"%s\": {\"calls\": %" PRIu64 ", \"failures\": %" PRIu64 "}", first ? "" : ",",
                    name.c_str(), cf.first, cf.second);
        first = false;
        total += cf.first;
        failed += cf.second;
    }
    json += "\n  },\n  \"errors\": {";
    first = true;
    for (auto& [what, n] : s.errors) {
        json += fmt("%s\n    \"%s\": %" PRIu64, first ? "" : ",", what.c_str(), n);
        first = false;
    }
    json += fmt("\n  },\n  \"total\": %" PRIu64 ",\n  \"failures\": %" PRIu64 "\n}\n", total, failed);
    int fd = ::open(c.stats_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t n = ::write(fd, json.data(), json.size());
    (void)n;
    ::close(fd);
}

} // namespace fdnc::shim
