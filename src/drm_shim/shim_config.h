// ShimConfig: the drm_shim's settings, read from the environment once, at first use.
//
//   FDNC_SHIM_BACKEND=host             who serves the msm uAPI: "host" = host_sim's MsmKernel
//                                      (default); "guest" = fd_bo over a transport (Mesa on fdnc)
//   FDNC_SHIM_TRANSPORT=uri            guest: the transport (default "vtest:", i.e. $VTEST_SOCKET_NAME
//                                      or /tmp/.virgl_test; "virtgpu:/dev/dri/renderD128", "inproc:")
//   FDNC_SHIM_NODE=/dev/dri/renderD128 the path whose open() gives the fake node; its renderDN
//                                      number is the minor reported by stat (226:N)
//   FDNC_SHIM_ERA=classic|novma|vmbind the kernel era (host_sim KernelEra; default classic)
//   FDNC_SHIM_FENCE_DELAY_US=N         GPU execution time per submit (real-time clock; default 0)
//   FDNC_SHIM_MEMORY_LIMIT=bytes       GEM memory limit, K/M/G suffixes (default: the model's)
//   FDNC_SHIM_VA_START=addr            per-process VA range (defaults: the model's, 4 GiB at 4 GiB)
//   FDNC_SHIM_VA_SIZE=bytes
//   FDNC_SHIM_LOG=path                 one decoded line per ioctl (append, flushed per line)
//   FDNC_SHIM_STATS=path               JSON counts by ioctl kind and failures, rewritten when a
//                                      node file closes and at exit
//
// A bad value prints one line naming the variable to stderr and aborts the process: a test harness
// must never run against a half-configured host.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "host_sim/msm_kernel.h"

namespace fdnc::shim {

enum class BackendKind { Host, Guest };

struct ShimConfig {
    BackendKind backend = BackendKind::Host;
    std::string node_path = "/dev/dri/renderD128";
    uint32_t node_minor = 128;
    host::KernelEra era = host::KernelEra::Classic;
    uint64_t fence_delay_us = 0;
    std::optional<uint64_t> memory_limit;
    std::optional<uint64_t> va_start;
    std::optional<uint64_t> va_size;
    std::string transport_uri = "vtest:"; // guest backend only
    std::string log_path;   // empty: no log
    std::string stats_path; // empty: no stats
};

// The settings; the first call reads the environment (thread-safe), a bad value aborts.
const ShimConfig& shim_config();

// Parsers, exposed for tests: nullopt on a malformed value.
std::optional<uint64_t> parse_size(const std::string& s); // decimal/0x hex, optional K/M/G
std::optional<host::KernelEra> parse_era(const std::string& s);

} // namespace fdnc::shim
