// HostSimConfig: how a host_sim host (MsmRenderer over MsmKernel) is set up. Defined once, here;
// an "inproc:..." URI becomes one in inproc_host.cpp (host_sim_config), fdnc-hostsim's options in
// its main.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "host_sim/msm_kernel.h"

namespace fdnc::host {

struct HostSimConfig {
    // Kernel side: GPU ids (gpu.gpu_id 630, chip_id, gmem, priorities 3 = a630's 1 ring x 3
    // scheduler levels), va_start/va_size, era, gpu_exec_us, memory_limit, fail_hook.
    // The default clock is RealTime (a GPU thread retires submits), which is what a transport needs;
    // tests that want determinism pick ClockMode::Manual and call advance()/retire_all().
    KernelConfig kernel = [] {
        KernelConfig k;
        k.clock = ClockMode::RealTime;
        return k;
    }();
    uint32_t host_page_size = 4096; // B10
    bool fdnc_extensions = true;    // accept FDNC_CCMD_GEM_GET_IOVA (virtio_proto/fdnc_ext_wire.h)
    size_t log_capacity = 512;      // bounded in-memory log
    std::function<void(const std::string&)> log_sink;
};

} // namespace fdnc::host
