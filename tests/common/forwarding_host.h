// ForwardingHost: a Host that passes every call to another one. Test decorators derive from it and
// override only the calls they change (fault injection, held fences).
#pragma once

#include <cstdint>
#include <span>
#include <utility>

#include "virtio_proto/host.h"

namespace fdnc::test {

class ForwardingHost : public Host {
public:
    explicit ForwardingHost(Host& inner) : inner_(inner) {}
    int get_capset(uint32_t id, uint32_t v, std::span<uint8_t> out) override { return inner_.get_capset(id, v, out); }
    void set_fence_callback(HostFenceCallback cb) override { inner_.set_fence_callback(std::move(cb)); }
    int context_create(uint32_t ctx, uint32_t capset, uint32_t rings) override {
        return inner_.context_create(ctx, capset, rings);
    }
    void context_destroy(uint32_t ctx) override { inner_.context_destroy(ctx); }
    int submit_cmd(uint32_t ctx, std::span<const uint8_t> cmd) override { return inner_.submit_cmd(ctx, cmd); }
    int resource_create_blob(uint32_t ctx, uint32_t res, uint32_t mem, uint32_t flags, uint64_t size,
                             uint64_t blob_id) override {
        return inner_.resource_create_blob(ctx, res, mem, flags, size, blob_id);
    }
    int resource_map(uint32_t ctx, uint32_t res, HostMapping* out) override { return inner_.resource_map(ctx, res, out); }
    void resource_unref(uint32_t ctx, uint32_t res) override { inner_.resource_unref(ctx, res); }
    int resource_export_fd(uint32_t ctx, uint32_t res, int* fd) override { return inner_.resource_export_fd(ctx, res, fd); }
    int resource_import_fd(uint32_t ctx, uint32_t res, int fd, uint64_t* size) override {
        return inner_.resource_import_fd(ctx, res, fd, size);
    }
    int context_create_fence(uint32_t ctx, uint32_t ring, uint64_t id) override {
        return inner_.context_create_fence(ctx, ring, id);
    }

protected:
    Host& inner_;
};

} // namespace fdnc::test
