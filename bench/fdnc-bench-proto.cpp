// Protocol throughput (DESIGN.md target: >= 1 M small ccmds/s encoded, transported and executed
// in-process). Each "E2E" benchmark encodes ccmds, batches them through RequestBuffer into an
// InprocTransport whose host thread decodes and executes them, and stops the clock only after
// the host's shmem.seqno has reached the last one. items_per_second = ccmds per wall-clock second.
#include <benchmark/benchmark.h>

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "virtio_proto/ccmd_decoder.h"
#include "virtio_proto/ccmd_encoder.h"
#include "host_sim/inproc_host.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/request_buffer.h"
#include "virtio_proto/virtgpu_uapi.h"

using namespace fdnc;
using namespace fdnc::wire;

namespace {

// The host side at its cheapest (virtio_proto must not need host_sim): the shared CcmdDecoder, a
// GET_PARAM answer written per R3, shmem.seqno per H7, fences retired at once.
class BenchHost : public Host {
public:
    ~BenchHost() override {
        if (shmem_) munmap(shmem_, shmem_size_);
    }
    int get_capset(uint32_t, uint32_t, std::span<uint8_t>) override { return -ENOENT; }
    void set_fence_callback(HostFenceCallback cb) override { cb_ = std::move(cb); }
    int context_create(uint32_t, uint32_t, uint32_t) override { return 0; }
    void context_destroy(uint32_t) override {}
    int submit_cmd(uint32_t, std::span<const uint8_t> cmd) override {
        CcmdDecoder dec(cmd, shmem_ ? static_cast<uint32_t>(shmem_size_ - kShmemRspMemOffset) : 0);
        Ccmd c;
        while (dec.next(&c)) {
            if (c.cmd == MSM_CCMD_IOCTL_SIMPLE) {
                uint8_t* slot = shmem_ + kShmemRspMemOffset + c.rsp_off;
                uint32_t guest_len;
                std::memcpy(&guest_len, slot, 4);
                uint8_t rsp[ccmd::kGetParamRspSize] = {};
                drm_msm_param p{};
                std::memcpy(&p, c.tail().data(), std::min(c.tail().size(), sizeof p));
                p.value = 630;
                std::memcpy(rsp + 8, &p, sizeof p);
                const uint32_t n = std::min<uint32_t>(guest_len, c.rsp_size);
                std::memcpy(slot + 4, rsp + 4, n > 4 ? n - 4 : 0);
                std::memcpy(slot, &n, 4);
            }
            __atomic_store_n(reinterpret_cast<uint32_t*>(shmem_), c.seqno, __ATOMIC_RELEASE);
        }
        return dec.error() == DecodeError::None ? 0 : -EINVAL;
    }
    int resource_create_blob(uint32_t, uint32_t, uint32_t, uint32_t, uint64_t size, uint64_t blob_id) override {
        if (blob_id != 0 || shmem_) return -EINVAL;
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return -ENOMEM;
        shmem_ = static_cast<uint8_t*>(p);
        shmem_size_ = size;
        const uint32_t off = kShmemRspMemOffset;
        std::memcpy(shmem_ + 4, &off, 4);
        return 0;
    }
    int resource_map(uint32_t, uint32_t, HostMapping* out) override {
        if (!shmem_) return -ENOENT;
        *out = {shmem_, shmem_size_};
        return 0;
    }
    void resource_unref(uint32_t, uint32_t) override {}
    int resource_export_fd(uint32_t, uint32_t, int*) override { return -ENOSYS; }
    int resource_import_fd(uint32_t, uint32_t, int, uint64_t*) override { return -ENOSYS; }
    int context_create_fence(uint32_t ctx, uint32_t ring, uint64_t id) override {
        if (cb_) cb_(ctx, ring, id);
        return 0;
    }

private:
    HostFenceCallback cb_;
    uint8_t* shmem_ = nullptr;
    uint64_t shmem_size_ = 0;
};

struct Stack {
    BenchHost host;
    std::unique_ptr<InprocTransport> t;
    std::unique_ptr<RequestBuffer> rb;
    bool ok = false;
    explicit Stack(uint32_t rtt_us = 0) {
        InprocConfig cfg;
        cfg.rtt_us = rtt_us;
        t = std::make_unique<InprocTransport>(host::make_inproc_host(host, cfg));
        if (t->context_init(VIRTGPU_CAPSET_DRM, 1) != 0) return;
        BlobCreateArgs a{VIRTGPU_BLOB_MEM_HOST3D, VIRTGPU_BLOB_FLAG_USE_MAPPABLE, kShmemSize, kShmemBlobId, {}};
        uint32_t h = 0;
        void* shmem = nullptr;
        if (t->create_blob(a, &h) != 0 || t->map_blob(h, kShmemSize, &shmem) != 0) return;
        rb = std::make_unique<RequestBuffer>(*t, shmem, kShmemSize);
        ok = true;
    }
};

// One iteration = kBatchCcmds requests encoded, enqueued, flushed and *executed*: the clock of
// each iteration stops only once the host's shmem.seqno reached the batch's last request. (It used
// to stop when the loop ended, before the final drain: encode + enqueue only.)
constexpr int kBatchCcmds = 4096;

template <class MakeReq> void run_e2e(benchmark::State& state, MakeReq make) {
    Stack s;
    if (!s.ok) {
        state.SkipWithError("stack set-up failed");
        return;
    }
    for (auto _ : state) {
        uint32_t last = 0;
        for (int i = 0; i < kBatchCcmds; ++i) {
            auto e = make();
            last = s.rb->enqueue(e.span());
            if (last == 0) {
                state.SkipWithError("enqueue failed");
                return;
            }
        }
        if (s.rb->wait_seqno(last, 60'000'000'000) != 0) {
            state.SkipWithError("host did not finish");
            return;
        }
    }
    state.SetItemsProcessed(state.iterations() * kBatchCcmds);
    state.counters["batches"] = static_cast<double>(s.rb->stats().batches);
}

void BM_E2E_Nop(benchmark::State& state) { run_e2e(state, [] { return ccmd::nop(); }); }
void BM_E2E_GetParamAsync(benchmark::State& state) {
    run_e2e(state, [] { return ccmd::get_param(MSM_PARAM_GPU_ID); });
}

// A waiting call per item: one host round trip, with the injected rtt (us) as the argument.
void BM_E2E_GetParamSync(benchmark::State& state) {
    Stack s(static_cast<uint32_t>(state.range(0)));
    if (!s.ok) {
        state.SkipWithError("stack set-up failed");
        return;
    }
    uint8_t rsp[ccmd::kGetParamRspSize];
    for (auto _ : state) {
        auto e = ccmd::get_param(MSM_PARAM_GPU_ID);
        if (s.rb->send_sync(e.span(), rsp, 10'000'000'000) != 0) {
            state.SkipWithError("send_sync failed");
            return;
        }
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_EncodeNop(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(ccmd::nop());
    state.SetItemsProcessed(state.iterations());
}

void BM_EncodeGetParam(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(ccmd::get_param(MSM_PARAM_GPU_ID));
    state.SetItemsProcessed(state.iterations());
}

void BM_DecodeGetParamBatch(benchmark::State& state) {
    std::vector<uint8_t> batch;
    while (batch.size() + 44 <= kRequestBufferSize) {
        auto e = ccmd::get_param(MSM_PARAM_GPU_ID);
        batch.insert(batch.end(), e.bytes.begin(), e.bytes.end());
    }
    size_t n = 0;
    for (auto _ : state) {
        CcmdDecoder dec(batch, kShmemSize - kShmemRspMemOffset);
        Ccmd c;
        while (dec.next(&c)) ++n;
    }
    state.SetItemsProcessed(static_cast<int64_t>(n));
}

} // namespace

BENCHMARK(BM_E2E_Nop)->UseRealTime();
BENCHMARK(BM_E2E_GetParamAsync)->UseRealTime();
BENCHMARK(BM_E2E_GetParamSync)->Arg(0)->Arg(200)->UseRealTime();
BENCHMARK(BM_EncodeNop);
BENCHMARK(BM_EncodeGetParam);
BENCHMARK(BM_DecodeGetParamBatch);
BENCHMARK_MAIN();
