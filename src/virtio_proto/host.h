// Host: the host end of a native context, shaped like virglrenderer's public API
// (context_create / submit_cmd / resource_create_blob / context_create_fence + a retire callback),
// so the in-process transport, fdnc-hostsim's vtest server and tests drive host_sim the same way.
// host_sim implements it; virtio_proto only defines it (arrows point down: host_sim -> virtio_proto).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

namespace fdnc {

// Called when a fence created with context_create_fence retires (maybe from a host thread).
using HostFenceCallback = std::function<void(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id)>;

struct HostMapping {
    void* ptr = nullptr;
    uint64_t size = 0;
};

class Host {
public:
    virtual ~Host() = default;

    // Returns the host capset size; copies min(size, out.size()) bytes. -ENOENT if unsupported.
    virtual int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) = 0;

    virtual void set_fence_callback(HostFenceCallback cb) = 0;

    virtual int context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t num_rings) = 0;
    virtual void context_destroy(uint32_t ctx_id) = 0;

    // Runs a ccmd stream in order (PROTOCOL.md §6.1). Returns 0, or -errno when the stream was
    // aborted (requests before the failing one ran).
    virtual int submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) = 0;

    // RESOURCE_CREATE_BLOB for res_id (chosen by the caller: guest kernel / vtest server).
    virtual int resource_create_blob(uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem,
                                     uint32_t blob_flags, uint64_t size, uint64_t blob_id) = 0;
    virtual int resource_map(uint32_t ctx_id, uint32_t res_id, HostMapping* out) = 0;
    virtual void resource_unref(uint32_t ctx_id, uint32_t res_id) = 0;

    // Sharing across contexts: export gives a new fd; import binds a shared resource to res_id
    // in ctx (B14) and reports its size.
    virtual int resource_export_fd(uint32_t ctx_id, uint32_t res_id, int* fd) = 0;
    virtual int resource_import_fd(uint32_t ctx_id, uint32_t res_id, int fd, uint64_t* size) = 0;

    // A fence on ring_idx that retires after the work submitted before it on that ring (F4).
    virtual int context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) = 0;
};

} // namespace fdnc
