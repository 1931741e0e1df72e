// HoldingHost: a Host decorator that can hold back fence retirements, so tests can see a fence
// that has not signaled yet and then release it (no timing involved).
#pragma once

#include <mutex>
#include <tuple>
#include <vector>

#include "common/forwarding_host.h"

namespace fdnc::test {

class HoldingHost : public ForwardingHost {
public:
    explicit HoldingHost(Host& inner) : ForwardingHost(inner) {
        inner_.set_fence_callback([this](uint32_t c, uint32_t r, uint64_t id) { on_retire(c, r, id); });
    }
    ~HoldingHost() override { inner_.set_fence_callback([](uint32_t, uint32_t, uint64_t) {}); }

    void hold(bool on) {
        std::vector<std::tuple<uint32_t, uint32_t, uint64_t>> release;
        HostFenceCallback cb;
        {
            std::lock_guard g(mu_);
            holding_ = on;
            if (!on) release.swap(held_);
            cb = cb_;
        }
        for (auto& [c, r, id] : release)
            if (cb) cb(c, r, id);
    }

    void set_fence_callback(HostFenceCallback cb) override {
        std::lock_guard g(mu_);
        cb_ = std::move(cb);
    }

private:
    void on_retire(uint32_t c, uint32_t r, uint64_t id) {
        HostFenceCallback cb;
        {
            std::lock_guard g(mu_);
            if (holding_) {
                held_.emplace_back(c, r, id);
                return;
            }
            cb = cb_;
        }
        if (cb) cb(c, r, id);
    }
    std::mutex mu_;
    bool holding_ = false;
    std::vector<std::tuple<uint32_t, uint32_t, uint64_t>> held_;
    HostFenceCallback cb_;
};

} // namespace fdnc::test
