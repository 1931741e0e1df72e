// HostileTransport: a Transport whose "host" is the fuzzer. Every reply the guest parses comes
// from the input: the capset, the shared page's initial contents (rsp_mem_offset, async_error,
// global_faults), and after each execbuf the seqno, the response slots and stray writes anywhere
// in the page, plus the results of fence waits. Single-threaded: the host "runs" inside execbuf.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "fuzz_input.h"
#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/transport.h"
#include "virtio_proto/vdrm_wire.h"

namespace fdnc::fuzz {

// Per-execbuf host behaviour bits (one byte of input).
enum HostReply : uint8_t {
    kSeqnoHonest = 0x01,    // seqno = the last request of the batch (else: a fuzzed u32 if kSeqnoFuzz)
    kSeqnoFuzz = 0x02,      // neither bit: the seqno never advances (a host that never answers)
    kWriteResponses = 0x04, // each slot gets len (R3) + fuzzed bytes; the len itself may be garbage
    kGarbage = 0x08,        // u16 offset, u8 count, bytes: written anywhere in the page
    kAsyncError = 0x10,     // async_error += 1
    kFailExecbuf = 0x20,    // execbuf returns -EPIPE (a dead host)
    kGarbageLen = 0x40,     // slot len fuzzed instead of min(pre-written, size)
};

class HostileTransport : public Transport {
public:
    explicit HostileTransport(FuzzInput& in) : in_(in), shmem_(wire::kShmemSize, 0) {
        // The page's first 64 bytes as the host left them at creation (§5.3).
        auto init = in_.bytes(64);
        std::memcpy(shmem_.data(), init.data(), init.size());
    }

    uint8_t* shmem() { return shmem_.data(); }

    TransportInfo info() const override { return {"hostile", "fuzz", false, 4096}; }
    int get_capset(uint32_t, uint32_t, std::span<uint8_t> out) override {
        auto caps = in_.bytes(sizeof(wire::virgl_renderer_capset_drm));
        std::memset(out.data(), 0, out.size());
        std::memcpy(out.data(), caps.data(), std::min(caps.size(), out.size()));
        return static_cast<int>(caps.size());
    }
    int context_init(uint32_t, uint32_t) override { return 0; }
    int create_blob(const BlobCreateArgs& args, uint32_t* handle) override {
        if (!args.cmd.empty()) host_run(args.cmd);
        *handle = ++next_handle_;
        sizes_[*handle] = args.size;
        return 0;
    }
    int resource_id(uint32_t handle, uint32_t* res_id, bool* waited) override {
        if (waited) *waited = false;
        *res_id = handle + 1;
        return 0;
    }
    int execbuf(const ExecbufArgs& args, TransportFence* out) override {
        if (host_run(args.cmd) < 0) return -EPIPE;
        if (args.fence_out && out) {
            out->ring_idx = args.ring_idx;
            out->point = ++points_[args.ring_idx];
        }
        return 0;
    }
    int wait_fence(TransportFence, int64_t) override {
        switch (in_.u8() % 8) {
        case 5: return -ETIMEDOUT;
        case 6: return -EPIPE;
        case 7: return -EIO;
        default: return 0;
        }
    }
    int map_blob(uint32_t handle, uint64_t size, void** ptr) override {
        if (handle == 1) { // the shared page is always the first blob (Device::init)
            if (size > shmem_.size()) return -EINVAL;
            *ptr = shmem_.data();
            return 0;
        }
        if (size > (64u << 20)) return -ENOMEM;
        auto& m = maps_[handle];
        m.assign(size, 0);
        *ptr = m.data();
        return 0;
    }
    void unmap_blob(uint32_t handle, void*, uint64_t) override { maps_.erase(handle); }
    int close_blob(uint32_t handle) override {
        maps_.erase(handle);
        sizes_.erase(handle);
        return 0;
    }
    int export_blob_fd(uint32_t, int*) override { return -ENOSYS; }
    int import_blob_fd(int, uint32_t*, uint64_t*) override { return -ENOSYS; }

private:
    void store(size_t off, uint32_t v) {
        if (off + 4 <= shmem_.size()) __atomic_store_n(reinterpret_cast<uint32_t*>(shmem_.data() + off), v, __ATOMIC_RELEASE);
    }
    uint32_t load(size_t off) const {
        uint32_t v = 0;
        if (off + 4 <= shmem_.size()) std::memcpy(&v, shmem_.data() + off, 4);
        return v;
    }

    int host_run(std::span<const uint8_t> cmd) {
        const uint8_t how = in_.u8();
        if (how & kFailExecbuf) return -EPIPE;
        const uint32_t rsp_base = load(offsetof(wire::vdrm_shmem, rsp_mem_offset));
        uint32_t last = 0;
        // The guest's own framing is trusted only as far as the decoder accepts it.
        CcmdDecoder dec(cmd, rsp_base < shmem_.size() ? static_cast<uint32_t>(shmem_.size() - rsp_base) : 0);
        Ccmd c;
        while (dec.next(&c)) {
            last = c.seqno;
            if ((how & kWriteResponses) && c.rsp_size >= 8) {
                const uint64_t at = uint64_t{rsp_base} + c.rsp_off;
                if (at + c.rsp_size <= shmem_.size()) {
                    auto body = in_.bytes(c.rsp_size);
                    uint8_t* p = shmem_.data() + at;
                    const uint32_t pre = load(at);
                    std::memset(p + 4, 0, c.rsp_size - 4);
                    if (body.size() > 4) std::memcpy(p + 4, body.data() + 4, body.size() - 4);
                    uint32_t len = std::min(pre, c.rsp_size);
                    if (how & kGarbageLen) std::memcpy(&len, body.data(), std::min<size_t>(4, body.size()));
                    store(at, len);
                }
            }
        }
        if (how & kGarbage) {
            const uint16_t off = in_.u16();
            auto junk = in_.bytes(in_.u8());
            for (size_t i = 0; i < junk.size() && off + i < shmem_.size(); ++i) shmem_[off + i] = junk[i];
        }
        if (how & kAsyncError) store(offsetof(wire::msm_shmem, async_error), load(offsetof(wire::msm_shmem, async_error)) + 1);
        if (how & kSeqnoHonest) store(offsetof(wire::vdrm_shmem, seqno), last ? last : load(0));
        else if (how & kSeqnoFuzz) store(offsetof(wire::vdrm_shmem, seqno), in_.u32());
        return 0;
    }

    FuzzInput& in_;
    std::vector<uint8_t> shmem_;
    uint32_t next_handle_ = 0;
    std::map<uint32_t, uint64_t> points_;
    std::map<uint32_t, uint64_t> sizes_;
    std::map<uint32_t, std::vector<uint8_t>> maps_;
};

} // namespace fdnc::fuzz
