// The one in-process stack the suites share: a host (host_sim's MsmRenderer, or any fdnc::Host),
// the in-process transport over it (client half: transports/inproc_transport, host half:
// host_sim/inproc_host), and for InprocStack a Device on top. Tests reach the host model and the
// transport's fault hooks through it instead of wiring the layers by hand.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

#include "fd_bo/device.h"
#include "host_sim/inproc_host.h"
#include "host_sim/msm_renderer.h"
#include "transports/inproc_transport.h"

namespace fdnc::test {

// An in-process transport over a Host the caller keeps alive.
inline std::unique_ptr<InprocTransport> make_inproc(Host& host, InprocConfig cfg = {}) {
    return std::make_unique<InprocTransport>(host::make_inproc_host(host, cfg));
}

// An in-process transport that owns its Host.
inline std::unique_ptr<InprocTransport> make_inproc(std::unique_ptr<Host> host, InprocConfig cfg = {}) {
    return std::make_unique<InprocTransport>(host::make_inproc_host(std::move(host), cfg));
}

// What an "inproc:..." URI opens: a fresh MsmRenderer configured from cfg.
inline std::unique_ptr<InprocTransport> open_inproc_transport(const InprocConfig& cfg = {}) {
    return std::make_unique<InprocTransport>(host::make_inproc_msm_host(cfg));
}

struct InprocStack {
    std::unique_ptr<Host> host;
    host::MsmRenderer* model = nullptr;
    std::unique_ptr<Host> wrapper; // optional misbehaving layer between transport and model
    InprocTransport* transport = nullptr;
    std::unique_ptr<Device> dev;

    // make_wrapper(model) may return nullptr (the transport then talks to the model directly).
    // tune_host adjusts the model's config beyond what an InprocConfig says.
    template <class Wrap = std::nullptr_t>
    explicit InprocStack(InprocConfig ic = {}, DeviceOptions opts = {}, Wrap make_wrapper = nullptr,
                         const std::function<void(host::HostSimConfig&)>& tune_host = nullptr) {
        host::HostSimConfig hc = host::host_sim_config(ic);
        if (tune_host) tune_host(hc);
        host = make_msm_host(hc);
        model = static_cast<host::MsmRenderer*>(host.get());
        if constexpr (!std::is_same_v<Wrap, std::nullptr_t>) wrapper = make_wrapper(*model);
        auto t = make_inproc(wrapper ? *wrapper : *host, ic);
        transport = t.get();
        std::string err;
        dev = Device::open(std::move(t), opts, &err);
        INFO("Device::open: " << err);
        REQUIRE(dev);
    }
    uint32_t ctx() const { return transport->ctx_id(); }
};

} // namespace fdnc::test
