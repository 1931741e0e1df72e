#include "capi/open_device.h"

#include <atomic>
#include <cerrno>

#include "host_sim/msm_renderer.h"
#include "virtio_proto/transport_uri.h"

namespace fdnc {

std::unique_ptr<Transport> open_inproc_transport(const InprocConfig& cfg) {
    host::HostSimConfig hc;
    hc.kernel.va_start = cfg.va_start;
    hc.kernel.va_size = cfg.va_size;
    hc.kernel.gpu_exec_us = cfg.gpu_us;
    if (cfg.gpu_id) hc.kernel.gpu.gpu_id = cfg.gpu_id;
    if (cfg.chip_id) hc.kernel.gpu.chip_id = cfg.chip_id;
    // oom_after=N: the host's kernel accepts N more GEM_NEWs, then reports -ENOMEM. The budget is
    // armed only after the renderer's own probe allocation (§4.4 step 5) so N counts client bos.
    auto budget = std::make_shared<std::atomic<int64_t>>(-1);
    if (cfg.oom_after) {
        hc.kernel.fail_hook = [budget](host::KernelOp op, host::FileId) {
            if (op != host::KernelOp::GemNew) return 0;
            int64_t left = budget->load();
            if (left < 0) return 0;
            if (left == 0) return -ENOMEM;
            budget->fetch_sub(1);
            return 0;
        };
    }
    auto h = make_msm_host(hc);
    if (cfg.oom_after) budget->store(static_cast<int64_t>(cfg.oom_after));
    return std::make_unique<InprocTransport>(std::move(h), cfg);
}

std::unique_ptr<Transport> open_transport_uri(std::string_view uri, std::string* error) {
    // virtio_proto knows every URI scheme; the in-process host lives above it, so it is passed in.
    return open_transport(uri, error,
                          [](const InprocConfig& c, std::string*) { return open_inproc_transport(c); });
}

std::unique_ptr<Device> open_device(std::string_view uri, const DeviceOptions& opts, std::string* error) {
    auto t = open_transport_uri(uri, error);
    if (!t) return nullptr;
    return Device::open(std::move(t), opts, error);
}

} // namespace fdnc
