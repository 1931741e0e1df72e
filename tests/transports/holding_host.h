// HoldingHost: a Host decorator that can hold back fence retirements, so tests can see a fence
// that has not signaled yet and then release it (no timing involved).
#pragma once

#include <mutex>
#include <tuple>
#include <vector>

#include "virtio_proto/host.h"

namespace fdnc::test {

class HoldingHost : public Host {
public:
    explicit HoldingHost(Host& inner) : inner_(inner) {
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

    int get_capset(uint32_t id, uint32_t v, std::span<uint8_t> out) override { return inner_.get_capset(id, v, out); }
    void set_fence_callback(HostFenceCallback cb) override {
        std::lock_guard g(mu_);
        cb_ = std::move(cb);
    }
    int context_create(uint32_t c, uint32_t capset, uint32_t rings) override {
        return inner_.context_create(c, capset, rings);
    }
    void context_destroy(uint32_t c) override { inner_.context_destroy(c); }
    int submit_cmd(uint32_t c, std::span<const uint8_t> cmd) override { return inner_.submit_cmd(c, cmd); }
    int resource_create_blob(uint32_t c, uint32_t res, uint32_t mem, uint32_t flags, uint64_t size,
                             uint64_t blob_id) override {
        return inner_.resource_create_blob(c, res, mem, flags, size, blob_id);
    }
    int resource_map(uint32_t c, uint32_t res, HostMapping* out) override { return inner_.resource_map(c, res, out); }
    void resource_unref(uint32_t c, uint32_t res) override { inner_.resource_unref(c, res); }
    int resource_export_fd(uint32_t c, uint32_t res, int* fd) override { return inner_.resource_export_fd(c, res, fd); }
    int resource_import_fd(uint32_t c, uint32_t res, int fd, uint64_t* size) override {
        return inner_.resource_import_fd(c, res, fd, size);
    }
    int context_create_fence(uint32_t c, uint32_t ring, uint64_t id) override {
        return inner_.context_create_fence(c, ring, id);
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
    Host& inner_;
    std::mutex mu_;
    bool holding_ = false;
    std::vector<std::tuple<uint32_t, uint32_t, uint64_t>> held_;
    HostFenceCallback cb_;
};

} // namespace fdnc::test
