#include "replay/round_trip_probe.h"

#include <chrono>
#include <vector>

#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/request_buffer.h"

namespace fdnc::replay {

LatencySummary probe_round_trip(const DeviceFactory& open, unsigned calls, std::string* error) {
    DeviceOptions opts;
    opts.bo_cache = false;
    opts.suballoc = false;
    opts.debug_name = "fdnc-replay-rtt-probe";
    std::unique_ptr<Device> dev = open(opts, error);
    if (!dev) return {};
    constexpr int64_t kTimeoutNs = 5'000'000'000;
    std::vector<uint64_t> ns;
    ns.reserve(calls);
    std::vector<uint8_t> none;
    for (unsigned i = 0; i <= calls; ++i) {
        auto nop = ccmd::nop();
        const auto t0 = std::chrono::steady_clock::now();
        const int r = dev->requests().send_sync(nop.span(), none, kTimeoutNs);
        const auto t1 = std::chrono::steady_clock::now();
        if (r != 0) {
            if (error) *error = "round-trip probe: NOP send_sync failed (" + std::to_string(r) + ")";
            return {};
        }
        if (i > 0) ns.push_back(uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
    return summarize(std::move(ns));
}

} // namespace fdnc::replay
