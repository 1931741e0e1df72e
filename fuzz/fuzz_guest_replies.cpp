// Target (c): the guest facing a hostile host. The fuzzer plays the host (HostileTransport): the
// capset, the shared page, every response slot, the seqno and the fence results. The guest
// (RequestBuffer alone, or a whole fd_bo Device) must turn every lie into an error code or a lost
// device, never crash, read outside the page, or wait past its bounded timeouts.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"
#include "fuzz_input.h"
#include "hostile_host.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/request_buffer.h"

namespace {

using namespace fdnc;
namespace cc = fdnc::ccmd;

constexpr int64_t kTimeoutNs = 200'000; // every wait is bounded: a lying host costs 200 us at most

// RequestBuffer level: each op sends one request type and reads the result.
void drive_requests(fuzz::FuzzInput& in) {
    fuzz::HostileTransport t(in);
    RequestBuffer rb(t, t.shmem(), wire::kShmemSize);
    for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
        switch (in.u8() % 6) {
        case 0: {
            auto e = cc::get_param(in.u32());
            std::vector<uint8_t> rsp(cc::kGetParamRspSize);
            int32_t ret = 0;
            uint64_t value = 0;
            if (rb.send_sync(e.span(), rsp, kTimeoutNs) == 0) (void)cc::parse_get_param(rsp, &ret, &value);
            break;
        }
        case 1: {
            auto e = cc::submitqueue_new(0, in.u8());
            std::vector<uint8_t> rsp(cc::kSubmitqueueNewRspSize);
            int32_t ret = 0;
            uint32_t q = 0;
            if (rb.send_sync(e.span(), rsp, kTimeoutNs) == 0) (void)cc::parse_submitqueue_new(rsp, &ret, &q);
            break;
        }
        case 2: {
            auto e = cc::gem_new(in.u64(), 4096, 0, in.u32());
            (void)rb.enqueue(e.span());
            break;
        }
        case 3: {
            // A caller asking for a smaller or larger response than the host writes.
            auto e = cc::get_param(wire::MSM_PARAM_FAULTS);
            std::vector<uint8_t> rsp(in.u8() % 64);
            (void)rb.send_sync(e.span(), rsp, kTimeoutNs);
            break;
        }
        case 4:
            (void)rb.wait_seqno(in.u32(), kTimeoutNs);
            break;
        case 5:
            (void)rb.flush();
            break;
        }
        (void)rb.host_seqno();
        (void)rb.async_error();
        (void)rb.global_faults();
    }
}

struct BoUnref {
    void operator()(Bo* b) const { b->unref(); }
};

// Device level: fd_bo over the lying host, bounded by sync_timeout_ns.
void drive_device(fuzz::FuzzInput& in) {
    DeviceOptions opts;
    opts.sync_timeout_ns = kTimeoutNs;
    opts.bo_cache = in.u8() & 1;
    opts.suballoc = in.u8() & 1;
    auto t = std::make_unique<fuzz::HostileTransport>(in);
    std::string err;
    auto dev = Device::open(std::move(t), opts, &err);
    if (!dev) return;
    std::vector<std::unique_ptr<Bo, BoUnref>> bos;
    std::vector<Pipe*> pipes;
    for (int ops = 0; ops < 48 && !in.empty(); ++ops) {
        switch (in.u8() % 8) {
        case 0: {
            int e = 0;
            Bo* b = dev->bo_new(1 + in.u32() % (1u << 20), in.u8() & kBoValidFlags, "fuzz", &e);
            if (b) bos.emplace_back(b);
            break;
        }
        case 1:
            if (!bos.empty()) bos.erase(bos.begin() + in.u8() % bos.size());
            break;
        case 2:
            if (!bos.empty()) {
                Bo* b = bos[in.u8() % bos.size()].get();
                int e = 0;
                if (auto* p = static_cast<uint8_t*>(b->map(&e))) p[b->size() - 1] = 1;
            }
            break;
        case 3:
            if (!bos.empty()) {
                Bo* b = bos[in.u8() % bos.size()].get();
                const uint32_t word = in.u32();
                (void)b->upload(&word, 0, sizeof word);
            }
            break;
        case 4: {
            int e = 0;
            if (pipes.size() < 4)
                if (Pipe* p = dev->pipe_new(in.u8() % 4, &e)) pipes.push_back(p);
            break;
        }
        case 5:
            if (!pipes.empty() && !bos.empty()) {
                Pipe* p = pipes[in.u8() % pipes.size()];
                Submit s(p);
                Bo* b = bos[in.u8() % bos.size()].get();
                uint32_t fence = 0;
                if (s.add_cmd(b, 0, std::min<uint64_t>(64, b->size() & ~3ull)) == 0 && s.flush(&fence) == 0)
                    (void)p->wait(fence, kTimeoutNs);
            }
            break;
        case 6:
            if (!bos.empty()) {
                Bo* b = bos[in.u8() % bos.size()].get();
                (void)b->cpu_prep(pipes.empty() ? nullptr : pipes[0], wire::MSM_PREP_READ, kTimeoutNs);
            }
            break;
        case 7:
            dev->retire();
            if (in.u8() & 1) dev->trim_cache();
            (void)dev->status();
            (void)dev->stats();
            break;
        }
    }
    bos.clear();
    for (Pipe* p : pipes) delete p;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::FuzzInput in(data, size);
    if (in.u8() & 1) drive_device(in);
    else drive_requests(in);
    return 0;
}
