// fdnc_drm_shim_device_stats: the guest backend's device counters for the program the shim is
// preloaded into (a GL benchmark reports them next to its frame times). Found with
// dlsym(RTLD_DEFAULT, ...), so a program needs no link-time dependency on the shim.
#include <cerrno>
#include <cstdio>
#include <string>

#include "guest_backend.h"
#include "render_node.h"

namespace {

std::string stats_json(fdnc::shim::GuestBackend& g) {
    const fdnc::DeviceStats s = g.device()->stats();
    std::string waits;
    for (size_t i = 0; i < static_cast<size_t>(fdnc::HostWait::Count); i++) {
        if (!s.host_waits_by_reason[i])
            continue;
        if (!waits.empty())
            waits += ',';
        waits += "\"" + std::string(fdnc::host_wait_name(static_cast<fdnc::HostWait>(i))) +
                 "\":" + std::to_string(s.host_waits_by_reason[i]);
    }
    const auto info = g.device()->transport().info();
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "{\"transport\":\"%s\",\"bo_news\":%llu,\"bo_new_waits\":%llu,\"host_waits\":%llu,"
                  "\"ccmds\":%llu,\"batches\":%llu,\"submits\":%llu,\"faults\":%llu,\"async_errors\":%llu,"
                  "\"bos_live\":%llu,\"va_peak_bytes\":%llu,\"context_lost\":%s,\"host_waits_by_reason\":{",
                  info.name.c_str(), static_cast<unsigned long long>(g.bo_news()),
                  static_cast<unsigned long long>(s.bo_new_waits), static_cast<unsigned long long>(s.host_waits),
                  static_cast<unsigned long long>(s.ccmds), static_cast<unsigned long long>(s.batches),
                  static_cast<unsigned long long>(s.submits), static_cast<unsigned long long>(s.faults),
                  static_cast<unsigned long long>(s.async_errors), static_cast<unsigned long long>(s.bos_live),
                  static_cast<unsigned long long>(s.va_peak_bytes), s.context_lost ? "true" : "false");
    return std::string(buf) + waits + "}}";
}

} // namespace

// snprintf-like: the JSON's length (without the NUL) or -errno; -ENODEV when this process has no
// fdnc device (no node opened yet, or the host backend).
extern "C" __attribute__((visibility("default"))) int fdnc_drm_shim_device_stats(char* buf, size_t len) {
    auto* node = fdnc::shim::RenderNode::existing();
    auto* g = node ? dynamic_cast<fdnc::shim::GuestBackend*>(node->backend()) : nullptr;
    if (!g || !g->device())
        return -ENODEV;
    const std::string json = stats_json(*g);
    if (buf && len) {
        const size_t n = json.size() < len - 1 ? json.size() : len - 1;
        json.copy(buf, n);
        buf[n] = '\0';
    }
    return static_cast<int>(json.size());
}
