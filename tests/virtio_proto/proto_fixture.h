// Shared set-up for the proto suite: an InprocTransport over a MiniHost with the shared page
// created and mapped (G4/G5), and a RequestBuffer on it; plus a recording fake Transport.
#pragma once

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "common/inproc_stack.h"
#include "mini_host.h"
#include "virtio_proto/ccmd_decoder.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/request_buffer.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace fdnc::test {

struct Channel {
    std::unique_ptr<MiniHost> host; // declared first: destroyed last
    std::unique_ptr<InprocTransport> transport;
    uint32_t shmem_handle = 0;
    void* shmem = nullptr;
    std::unique_ptr<RequestBuffer> rb;

    static std::unique_ptr<Channel> open(InprocConfig cfg = {}, MiniHostOptions opt = {}) {
        auto c = std::make_unique<Channel>();
        c->host = std::make_unique<MiniHost>(opt);
        c->transport = test::make_inproc(*c->host, cfg);
        if (c->transport->context_init(wire::VIRTGPU_CAPSET_DRM, 4) != 0) return nullptr;
        BlobCreateArgs a;
        a.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
        a.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
        a.size = wire::kShmemSize;
        a.blob_id = wire::kShmemBlobId;
        if (c->transport->create_blob(a, &c->shmem_handle) != 0) return nullptr;
        if (c->transport->map_blob(c->shmem_handle, a.size, &c->shmem) != 0) return nullptr;
        c->rb = std::make_unique<RequestBuffer>(*c->transport, c->shmem, wire::kShmemSize);
        return c;
    }
};

// Records every call; "executes" ccmd batches by moving shmem.seqno to their last record, so
// send_sync works without a host thread.
class RecordingTransport : public Transport {
public:
    struct Call {
        enum Kind { Execbuf, CreateBlob } kind;
        std::vector<uint8_t> bytes;
        uint32_t ring = 0;
        bool fence_out = false;
        uint64_t blob_id = 0;
    };
    std::vector<Call> calls;
    std::vector<uint8_t> shmem = std::vector<uint8_t>(wire::kShmemSize, 0);
    std::mutex mu;
    bool execute = true;          // false: batches are recorded but seqno never moves
    uint32_t garbage_rsp_len = 0; // non-zero: written as rsp.len into every response slot
    int execbuf_error = 0;        // non-zero: execbuf fails with it (recorded, not run)

    RecordingTransport() {
        const uint32_t off = wire::kShmemRspMemOffset;
        std::memcpy(shmem.data() + 4, &off, 4);
    }
    TransportInfo info() const override { return {"recording", "", false, 4096}; }
    int get_capset(uint32_t, uint32_t, std::span<uint8_t>) override { return -ENOENT; }
    int context_init(uint32_t, uint32_t) override { return 0; }
    int create_blob(const BlobCreateArgs& a, uint32_t* handle) override {
        std::lock_guard g(mu);
        calls.push_back({Call::CreateBlob, {a.cmd.begin(), a.cmd.end()}, 0, false, a.blob_id});
        run(a.cmd);
        *handle = static_cast<uint32_t>(calls.size());
        return 0;
    }
    int resource_id(uint32_t h, uint32_t* r, bool* w) override {
        *r = h;
        if (w) *w = false;
        return 0;
    }
    int execbuf(const ExecbufArgs& a, TransportFence* f) override {
        std::lock_guard g(mu);
        calls.push_back({Call::Execbuf, {a.cmd.begin(), a.cmd.end()}, a.ring_idx, a.fence_out, 0});
        if (execbuf_error) return execbuf_error;
        run(a.cmd);
        if (f) *f = TransportFence{a.ring_idx, a.fence_out ? calls.size() : 0};
        return 0;
    }
    int wait_fence(TransportFence, int64_t) override { return 0; }
    int map_blob(uint32_t, uint64_t, void**) override { return -ENOSYS; }
    void unmap_blob(uint32_t, void*, uint64_t) override {}
    int close_blob(uint32_t) override { return 0; }
    int export_blob_fd(uint32_t, int*) override { return -ENOSYS; }
    int import_blob_fd(int, uint32_t*, uint64_t*) override { return -ENOSYS; }

    size_t count() {
        std::lock_guard g(mu);
        return calls.size();
    }

private:
    void run(std::span<const uint8_t> cmd) {
        if (!execute) return;
        CcmdDecoder dec(cmd, wire::kShmemSize - wire::kShmemRspMemOffset);
        Ccmd c;
        while (dec.next(&c)) {
            if (garbage_rsp_len && c.rsp_size)
                std::memcpy(shmem.data() + wire::kShmemRspMemOffset + c.rsp_off, &garbage_rsp_len, 4);
            __atomic_store_n(reinterpret_cast<uint32_t*>(shmem.data()), c.seqno, __ATOMIC_RELEASE);
        }
    }
};

inline std::vector<uint8_t> bytes_of(const void* p, size_t n) {
    auto b = static_cast<const uint8_t*>(p);
    return {b, b + n};
}

} // namespace fdnc::test
