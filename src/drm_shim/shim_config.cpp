#include "shim_config.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fdnc::shim {

namespace {

[[noreturn]] void bad_setting(const char* var, const std::string& value, const char* why) {
    std::fprintf(stderr, "fdnc drm_shim: bad %s=\"%s\": %s\n", var, value.c_str(), why);
    std::abort();
}

std::optional<std::string> env(const char* var) {
    const char* v = std::getenv(var);
    if (!v)
        return std::nullopt;
    return std::string(v);
}

uint64_t size_setting(const char* var, const std::string& v) {
    auto n = parse_size(v);
    if (!n)
        bad_setting(var, v, "expected a number (decimal or 0x hex) with an optional K, M or G suffix");
    return *n;
}

// The N of ".../renderDN" (the render minor); 128 when the path does not end that way.
uint32_t minor_of(const std::string& path) {
    auto slash = path.rfind('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.rfind("renderD", 0) == 0 && base.size() > 7) {
        char* end = nullptr;
        unsigned long n = std::strtoul(base.c_str() + 7, &end, 10);
        if (*end == '\0' && n < 1024)
            return static_cast<uint32_t>(n);
    }
    return 128;
}

ShimConfig read_config() {
    ShimConfig c;
    if (auto v = env("FDNC_SHIM_BACKEND")) {
        if (*v == "host")
            c.backend = BackendKind::Host;
        else if (*v == "guest")
            c.backend = BackendKind::Guest;
        else
            bad_setting("FDNC_SHIM_BACKEND", *v, "expected host or guest");
    }
    if (auto v = env("FDNC_SHIM_NODE")) {
        if (v->empty() || (*v)[0] != '/')
            bad_setting("FDNC_SHIM_NODE", *v, "expected an absolute path");
        c.node_path = *v;
    }
    c.node_minor = minor_of(c.node_path);
    if (auto v = env("FDNC_SHIM_ERA")) {
        auto e = parse_era(*v);
        if (!e)
            bad_setting("FDNC_SHIM_ERA", *v, "expected classic, novma or vmbind");
        c.era = *e;
    }
    if (auto v = env("FDNC_SHIM_FENCE_DELAY_US"))
        c.fence_delay_us = size_setting("FDNC_SHIM_FENCE_DELAY_US", *v);
    if (auto v = env("FDNC_SHIM_MEMORY_LIMIT")) {
        c.memory_limit = size_setting("FDNC_SHIM_MEMORY_LIMIT", *v);
        if (*c.memory_limit == 0)
            bad_setting("FDNC_SHIM_MEMORY_LIMIT", *v, "must be > 0");
    }
    if (auto v = env("FDNC_SHIM_VA_START")) {
        c.va_start = size_setting("FDNC_SHIM_VA_START", *v);
        if (*c.va_start % 4096)
            bad_setting("FDNC_SHIM_VA_START", *v, "must be page aligned");
    }
    if (auto v = env("FDNC_SHIM_VA_SIZE")) {
        c.va_size = size_setting("FDNC_SHIM_VA_SIZE", *v);
        if (*c.va_size % 4096)
            bad_setting("FDNC_SHIM_VA_SIZE", *v, "must be page aligned");
    }
    if (c.va_start && c.va_size && *c.va_start + *c.va_size < *c.va_start)
        bad_setting("FDNC_SHIM_VA_SIZE", std::to_string(*c.va_size), "VA_START + VA_SIZE overflows");
    if (auto v = env("FDNC_SHIM_TRANSPORT")) {
        if (v->empty())
            bad_setting("FDNC_SHIM_TRANSPORT", *v, "expected a transport URI (vtest:PATH, virtgpu:NODE, inproc:...)");
        c.transport_uri = *v;
    }
    if (auto v = env("FDNC_SHIM_LOG"))
        c.log_path = *v;
    if (auto v = env("FDNC_SHIM_STATS"))
        c.stats_path = *v;
    return c;
}

} // namespace

std::optional<uint64_t> parse_size(const std::string& s) {
    if (s.empty() || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return std::nullopt;
    errno = 0;
    char* end = nullptr;
    unsigned long long n = std::strtoull(s.c_str(), &end, 0);
    if (errno || end == s.c_str())
        return std::nullopt;
    uint64_t mult = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mult = 1ull << 10; break;
        case 'm': case 'M': mult = 1ull << 20; break;
        case 'g': case 'G': mult = 1ull << 30; break;
        default: return std::nullopt;
        }
        if (end[1] != '\0')
            return std::nullopt;
    }
    if (n > UINT64_MAX / mult)
        return std::nullopt;
    return n * mult;
}

std::optional<host::KernelEra> parse_era(const std::string& s) {
    if (s == "classic")
        return host::KernelEra::Classic;
    if (s == "novma")
        return host::KernelEra::NoVmaTracking;
    if (s == "vmbind")
        return host::KernelEra::VmBind;
    return std::nullopt;
}

const ShimConfig& shim_config() {
    // Never destroyed: threads of the process the shim lives in (an in-process host still running
    // an item while the program exits) read it after static destructors have run (ASan saw a
    // use-after-free of node_path in stat() from the host thread at exit).
    static const ShimConfig* const config = new ShimConfig(read_config());
    return *config;
}

} // namespace fdnc::shim
