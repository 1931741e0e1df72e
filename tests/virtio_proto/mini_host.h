// MiniHost: the smallest honest Host for virtio_proto's tests and fdnc-smoke (virtio_proto must
// not depend on host_sim). It walks every stream with CcmdDecoder, answers NOP, IOCTL_SIMPLE
// (GET_PARAM, SUBMITQUEUE_NEW/CLOSE) and the other response ccmds with ret 0, parks GEM_NEW
// blob_ids for their blob create, creates the shared page exactly as VR13 does (blob_id 0, only
// USE_MAPPABLE, rsp_mem_offset 16), writes responses honoring R3, bumps shmem.seqno after every
// ccmd (H7) and retires fences at once (unless told to hold them). Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/host.h"

namespace fdnc::test {

struct MiniHostOptions {
    uint32_t gpu_id = 630;
    uint64_t chip_id = 0x06030000; // a630 in the classic encoding (§2.3)
    uint64_t va_start = 0x1'0000'0000ull;
    uint64_t va_size = 0x1'0000'0000ull;
    uint32_t priorities = 3;
    bool retire_fences = true; // false: fences are held until release_fences()
};

class MiniHost : public Host {
public:
    explicit MiniHost(MiniHostOptions opt = {});
    ~MiniHost() override;

    int get_capset(uint32_t capset_id, uint32_t version, std::span<uint8_t> out) override;
    void set_fence_callback(HostFenceCallback cb) override;
    int context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t num_rings) override;
    void context_destroy(uint32_t ctx_id) override;
    int submit_cmd(uint32_t ctx_id, std::span<const uint8_t> cmd) override;
    int resource_create_blob(uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem, uint32_t blob_flags,
                             uint64_t size, uint64_t blob_id) override;
    int resource_map(uint32_t ctx_id, uint32_t res_id, HostMapping* out) override;
    void resource_unref(uint32_t ctx_id, uint32_t res_id) override;
    int resource_export_fd(uint32_t ctx_id, uint32_t res_id, int* fd) override;
    int resource_import_fd(uint32_t ctx_id, uint32_t res_id, int fd, uint64_t* size) override;
    int context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) override;

    // Test hooks.
    void set_retire_fences(bool retire); // false: hold new fences
    void release_fences();               // retire every held fence, in order
    uint64_t executed(uint32_t cmd) const; // ccmds of this kind run
    uint64_t executed_total() const;
    uint64_t blobs_created() const;
    DecodeError last_error() const;
    std::vector<uint32_t> seqnos(uint32_t ctx_id) const; // every seqno run, in order
    size_t live_resources() const;

private:
    struct Resource {
        int fd = -1;
        void* ptr = nullptr;
        uint64_t size = 0;
        std::set<uint32_t> ctxs;
    };
    struct Context {
        uint32_t num_rings = 0;
        uint32_t shmem_res = 0; // 0 = none yet
        uint8_t* shmem = nullptr;
        uint64_t shmem_size = 0;
        std::map<uint32_t, uint64_t> parked; // blob_id -> GEM size (B5)
        std::vector<uint32_t> seqnos;
        uint32_t next_queue = 0;
    };
    struct Fence {
        uint32_t ctx, ring;
        uint64_t id;
    };

    int run(Context& c, const Ccmd& cmd);
    void respond(Context& c, const Ccmd& cmd, const void* rsp, uint32_t size);
    void drop_ref(uint32_t ctx, uint32_t res_id);
    bool param_value(uint32_t param, uint64_t* v) const;

    MiniHostOptions opt_;
    mutable std::mutex mu_;
    HostFenceCallback cb_;
    std::map<uint32_t, Context> ctxs_;
    std::map<uint32_t, Resource> res_;
    std::vector<Fence> held_;
    std::array<uint64_t, 16> executed_{};
    uint64_t blobs_created_ = 0;
    DecodeError last_error_ = DecodeError::None;
};

} // namespace fdnc::test
