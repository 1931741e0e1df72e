// Host wrappers that misbehave on purpose, for the fault-injection matrix: each forwards to a real
// host_sim host and breaks one promise of the protocol when armed.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "common/forwarding_host.h"
#include "host_sim/msm_renderer.h"
#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/host.h"
#include "virtio_proto/vdrm_wire.h"

namespace fdnc::test {

// A host that stops answering: once armed it swallows every ccmd stream and never retires a new
// fence, so shmem.seqno never advances (a hung host process / VM).
class SwallowingHost : public ForwardingHost {
public:
    using ForwardingHost::ForwardingHost;
    std::atomic<bool> armed{false};
    int submit_cmd(uint32_t ctx, std::span<const uint8_t> cmd) override {
        return armed ? 0 : inner_.submit_cmd(ctx, cmd);
    }
    int context_create_fence(uint32_t ctx, uint32_t ring, uint64_t id) override {
        return armed ? 0 : inner_.context_create_fence(ctx, ring, id);
    }
};

// A host that, once armed, overwrites the len word of every response slot it wrote with garbage
// (R3 says it must be min(guest len, host size)).
class GarbageSlotHost : public ForwardingHost {
public:
    using ForwardingHost::ForwardingHost;
    std::atomic<bool> armed{false};
    std::atomic<uint32_t> corrupted{0};
    int resource_create_blob(uint32_t ctx, uint32_t res, uint32_t mem, uint32_t flags, uint64_t size,
                             uint64_t blob_id) override {
        const int r = inner_.resource_create_blob(ctx, res, mem, flags, size, blob_id);
        if (r == 0 && blob_id == wire::kShmemBlobId) {
            HostMapping m;
            if (inner_.resource_map(ctx, res, &m) == 0) {
                std::lock_guard g(mu_);
                shmem_ = static_cast<uint8_t*>(m.ptr);
                shmem_size_ = m.size;
            }
        }
        return r;
    }
    int submit_cmd(uint32_t ctx, std::span<const uint8_t> cmd) override {
        const int r = inner_.submit_cmd(ctx, cmd);
        std::lock_guard g(mu_);
        if (!armed || !shmem_) return r;
        uint32_t base;
        std::memcpy(&base, shmem_ + offsetof(wire::vdrm_shmem, rsp_mem_offset), 4);
        CcmdDecoder dec(cmd, static_cast<uint32_t>(shmem_size_ - base));
        Ccmd c;
        while (dec.next(&c)) {
            if (!c.rsp_size) continue;
            const uint32_t junk = 0xdeadbeef;
            std::memcpy(shmem_ + base + c.rsp_off, &junk, 4);
            corrupted++;
        }
        return r;
    }

private:
    std::mutex mu_;
    uint8_t* shmem_ = nullptr;
    uint64_t shmem_size_ = 0;
};

} // namespace fdnc::test
