// fdnc-smoke: the smallest honest end-to-end run through the in-process transport. Opens an
// InprocTransport over MiniHost, creates and maps the shared page (G5), does GET_PARAM round
// trips and prints what happened (the proto suite's smoke test; the main job is fdnc-replay).
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "host_sim/inproc_host.h"
#include "mini_host.h"
#include "virtio_proto/ccmd_encoder.h"
#include "virtio_proto/drm_capset.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/request_buffer.h"
#include "virtio_proto/virtgpu_uapi.h"

using namespace fdnc;
using namespace fdnc::wire;

int main(int argc, char** argv) {
    std::string why;
    auto cfg = parse_inproc_uri(argc > 1 ? argv[1] : "inproc:rtt_us=200", &why);
    if (!cfg) {
        std::fprintf(stderr, "fdnc-smoke: %s\n", why.c_str());
        return 2;
    }
    test::MiniHost host;
    InprocTransport t(host::make_inproc_host(host, *cfg));
    auto fail = [](const char* what, int r) {
        std::fprintf(stderr, "fdnc-smoke: %s failed: %s\n", what, std::strerror(-r));
        return 1;
    };

    virgl_renderer_capset_drm caps{};
    int r = t.get_capset(VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&caps), sizeof caps});
    if (r < 0) return fail("get_capset", r);
    std::printf("capset: %d bytes, wire_format %u, context_type %u, va [0x%" PRIx64 ", +0x%" PRIx64 ")\n", r,
                caps.wire_format_version, caps.context_type, caps.u.msm.va_start, caps.u.msm.va_size);

    if ((r = t.context_init(VIRTGPU_CAPSET_DRM, 4)) < 0) return fail("context_init", r);
    BlobCreateArgs a;
    a.blob_mem = VIRTGPU_BLOB_MEM_HOST3D;
    a.blob_flags = VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    a.size = kShmemSize;
    a.blob_id = kShmemBlobId;
    uint32_t shmem_handle = 0;
    void* shmem = nullptr;
    if ((r = t.create_blob(a, &shmem_handle)) < 0) return fail("shmem create_blob", r);
    if ((r = t.map_blob(shmem_handle, a.size, &shmem)) < 0) return fail("shmem map", r);
    RequestBuffer rb(t, shmem, kShmemSize);
    std::printf("shmem: handle %u, rsp_mem_offset %u, response area %u bytes\n", shmem_handle,
                rb.rsp_mem_offset(), rb.rsp_area_size());

    const struct {
        uint32_t param;
        const char* name;
    } params[] = {{MSM_PARAM_GPU_ID, "GPU_ID"}, {MSM_PARAM_CHIP_ID, "CHIP_ID"},
                  {MSM_PARAM_VA_START, "VA_START"}, {MSM_PARAM_VA_SIZE, "VA_SIZE"}};
    for (const auto& p : params) {
        auto e = ccmd::get_param(p.param);
        uint8_t rsp[ccmd::kGetParamRspSize];
        const auto t0 = std::chrono::steady_clock::now();
        if ((r = rb.send_sync(e.span(), rsp, 5'000'000'000)) < 0) return fail("GET_PARAM", r);
        const auto us =
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
        int32_t ret = 0;
        uint64_t value = 0;
        if (!ccmd::parse_get_param(rsp, &ret, &value) || ret != 0) return fail("GET_PARAM response", -EPROTO);
        std::printf("GET_PARAM %-8s = 0x%" PRIx64 " (seqno %u, %lld us round trip)\n", p.name, value, e.seqno(),
                    static_cast<long long>(us));
    }
    const auto st = t.stats();
    const auto rs = rb.stats();
    std::printf("transport %s: %" PRIu64 " items sent, %" PRIu64 " executed, %" PRIu64 " host waits; %" PRIu64
                " ccmds in %" PRIu64 " batches; host seqno %u, async_error %u\n",
                t.info().detail.c_str(), st.items_sent, st.items_executed, st.host_waits, rs.ccmds, rs.batches,
                rb.host_seqno(), rb.async_error());
    t.close();
    std::printf("fdnc-smoke: OK\n");
    return 0;
}
