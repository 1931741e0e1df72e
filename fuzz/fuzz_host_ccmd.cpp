// Target (a): any byte stream into a host_sim context. A hostile guest drives MsmRenderer through
// the Host interface (ccmd streams, blob creates, unrefs, maps, fences, GPU time); the host must
// refuse bad input with an error or an async_error, never crash, leak or hang.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_input.h"
#include "host_ops.h"
#include "host_sim/msm_renderer.h"
#include "virtio_proto/drm_capset.h"
#include "virtio_proto/vdrm_wire.h"
#include "virtio_proto/virtgpu_uapi.h"

namespace {

using namespace fdnc;
using fdnc::fuzz::HostOp;

constexpr uint64_t kMaxBlob = 16ull << 20; // keeps one input's memory bounded

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    host::MsmRenderer h(fuzz::fuzz_host_config());
    h.set_fence_callback([](uint32_t, uint32_t, uint64_t) {});
    if (h.context_create(fuzz::kCtxId, wire::VIRTGPU_CAPSET_DRM, 4) != 0) __builtin_trap();
    if (h.resource_create_blob(fuzz::kCtxId, fuzz::kShmemResId, wire::VIRTGPU_BLOB_MEM_HOST3D,
                               wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE, wire::kShmemSize, wire::kShmemBlobId) != 0)
        __builtin_trap();

    // FDNC_FUZZ_TRACE=1: print the kernel's object count after each op (to debug a leak report).
    static const bool trace = std::getenv("FDNC_FUZZ_TRACE") != nullptr;
    // The kernel model frees an exported object only lazily (it cannot hook close() of the
    // dma-buf fd: MsmKernel::reap_orphan_exports_locked), so the leak check skips those runs.
    bool exported = false;
    fuzz::FuzzInput in(data, size);
    while (!in.empty()) {
        const auto op = static_cast<HostOp>(in.u8() % static_cast<uint8_t>(HostOp::Count));
        fuzz::FuzzInput a(nullptr, 0);
        {
            const auto args = in.bytes(in.u16());
            a = fuzz::FuzzInput(args.data(), args.size());
        }
        switch (op) {
        case HostOp::SubmitCmd: {
            // The host gets a private copy, like a transport's receive buffer (4-aligned per H2).
            auto s = a.rest();
            std::vector<uint8_t> cmd(s.begin(), s.end());
            (void)h.submit_cmd(fuzz::kCtxId, cmd);
            break;
        }
        case HostOp::CreateBlob: {
            const uint32_t res_id = a.u32(), mem = a.u32(), flags = a.u32();
            const uint64_t sz = a.u64() % (kMaxBlob + 1), blob_id = a.u64();
            if (h.resource_create_blob(fuzz::kCtxId, res_id, mem, flags, sz, blob_id) == 0 &&
                (flags & wire::VIRTGPU_BLOB_FLAG_USE_SHAREABLE))
                exported = true;
            break;
        }
        case HostOp::Unref:
            h.resource_unref(fuzz::kCtxId, a.u32());
            break;
        case HostOp::Map: {
            HostMapping m;
            if (h.resource_map(fuzz::kCtxId, a.u32(), &m) == 0 && m.ptr && m.size) {
                // A mapping must really be m.size bytes (ASan catches a short one).
                auto* p = static_cast<volatile uint8_t*>(m.ptr);
                p[0] = p[0];
                p[m.size - 1] = p[m.size - 1];
            }
            break;
        }
        case HostOp::Advance: {
            const uint32_t us = a.u32();
            if (us == 0) h.retire_all();
            else h.advance(us % 1'000'000);
            break;
        }
        case HostOp::Fence: {
            const uint32_t ring = a.u32();
            (void)h.context_create_fence(fuzz::kCtxId, ring, a.u64());
            break;
        }
        default:
            break;
        }
        if (trace) std::fprintf(stderr, "op %d: live objects %zu\n", static_cast<int>(op), h.live_objects());
    }
    h.context_destroy(fuzz::kCtxId);
    // In-flight submits keep their bos (as the kernel does) until they retire; then nothing of
    // the context may remain.
    h.retire_all();
    if (trace) std::fprintf(stderr, "after destroy: live objects %zu\n", h.live_objects());
    if (!exported && h.live_objects() != 0) __builtin_trap();
    return 0;
}
