#include "info_report.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "host_sim/inproc_host.h"
#include "host_sim/msm_renderer.h"
#include "virtio_proto/ccmd_encoder.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/request_buffer.h"
#include "transports/transport_uri.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/virtgpu_uapi.h"
#include "virtio_proto/vdrm_wire.h"
#include "transports/vtest_transport.h"

namespace fdnc::info {

namespace {

constexpr uint64_t kShmemSize = 0x4000; // §5.3

std::string errno_name(int neg) { return std::string(std::strerror(-neg)) + " (" + std::to_string(neg) + ")"; }

std::string hex(uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%" PRIx64, v);
    return b;
}

const char* context_type_name(uint32_t t) {
    switch (t) {
    case wire::VIRTGPU_DRM_CONTEXT_MSM: return "msm";
    case wire::VIRTGPU_DRM_CONTEXT_AMDGPU: return "amdgpu";
    case wire::VIRTGPU_DRM_CONTEXT_I915: return "i915";
    case wire::VIRTGPU_DRM_CONTEXT_ASAHI: return "asahi";
    case wire::VIRTGPU_DRM_CONTEXT_PANFROST: return "panfrost";
    default: return "unknown";
    }
}

// §4.3 encoding.
const char* cap_bool(uint32_t v) {
    if (v == wire::VIRTGPU_CAP_BOOL_TRUE) return "yes";
    if (v == wire::VIRTGPU_CAP_BOOL_FALSE) return "no";
    if (v == wire::VIRTGPU_CAP_BOOL_UNSUPPORTED_BY_HOST) return "unknown (host too old)";
    return "invalid";
}

void add(Report& r, std::string name, bool ok, std::string detail) {
    if (!ok && r.error.empty()) r.error = name + ": " + detail;
    r.checks.push_back({std::move(name), ok, std::move(detail)});
}

std::unique_ptr<Transport> open(Report& r, int timeout_ms) {
    std::string err;
    auto parsed = parse_transport_uri(r.uri, &err);
    if (!parsed) {
        add(r, "transport opens", false, err);
        return nullptr;
    }
    std::unique_ptr<Transport> t;
    switch (parsed->kind) {
    case TransportKind::Inproc:
        t = std::make_unique<InprocTransport>(host::make_inproc_msm_host(parsed->inproc));
        break;
    case TransportKind::Vtest: {
        VtestOptions o;
        o.socket_path = parsed->path;
        o.io_timeout_ms = timeout_ms;
        o.client_name = "fdnc-info";
        auto v = VtestTransport::connect(o, &err);
        if (v) r.vtest_protocol = v->protocol_version();
        t = std::move(v);
        break;
    }
    case TransportKind::Virtgpu: {
        VirtgpuOptions o;
        o.node = parsed->path;
        VirtgpuProbe p;
        t = VirtgpuTransport::open(o, &err, &p);
        r.virtgpu = p;
        break;
    }
    }
    if (!t) {
        add(r, "transport opens", false, err);
        return nullptr;
    }
    const TransportInfo ti = t->info();
    r.transport = ti.name;
    r.detail = ti.detail;
    r.host_assigns_res_id = ti.host_assigns_res_id;
    r.page_size = ti.host_page_size;
    add(r, "transport opens", true, ti.name + (ti.detail.empty() ? "" : " " + ti.detail));
    return t;
}

// A capset and a shared page prove little: a host can offer both and never answer (issue 13:
// every replay against the real server timed out in its first synchronous request). Usable
// means one synchronous request answered through the shared page and one fenced submit on a GPU
// ring retired, the two things every client does first.
void round_trip(Report& r, Transport& t, void* shmem, int timeout_ms) {
    const int64_t timeout_ns = int64_t(timeout_ms) * 1'000'000;
    RequestBuffer rb(t, shmem, kShmemSize);
    auto gp = ccmd::get_param(wire::MSM_PARAM_GPU_ID);
    std::vector<uint8_t> rsp(gp.rsp_size);
    int ret = rb.send_sync(gp.span(), rsp, timeout_ns);
    int32_t host_ret = 0;
    uint64_t gpu_id = 0;
    if (ret == 0 && !ccmd::parse_get_param(rsp, &host_ret, &gpu_id)) ret = -EPROTO;
    add(r, "synchronous request answered", ret == 0 && host_ret == 0,
        ret ? "GET_PARAM(GPU_ID): " + errno_name(ret) + " (shmem seqno " + std::to_string(rb.host_seqno()) + ")"
            : "GET_PARAM(GPU_ID) = " + std::to_string(gpu_id) + (host_ret ? ", host ret " + std::to_string(host_ret) : ""));
    if (!r.error.empty()) return;

    auto qn = ccmd::submitqueue_new(0, 0);
    rsp.assign(qn.rsp_size, 0);
    ret = rb.send_sync(qn.span(), rsp, timeout_ns);
    uint32_t queue = 0;
    if (ret == 0 && !ccmd::parse_submitqueue_new(rsp, &host_ret, &queue)) ret = -EPROTO;
    if (ret == 0 && host_ret != 0) ret = host_ret;
    // An empty submit on the priority-0 queue: ring 1 (F1), guest seqno 1 as its fence (§12.1).
    TransportFence fence;
    if (ret == 0) {
        auto sub = ccmd::gem_submit(wire::MSM_PIPE_3D0, queue, 1, {}, {});
        ret = rb.submit(sub.span(), 1, &fence);
    }
    if (ret == 0) ret = t.wait_fence(fence, timeout_ns);
    const uint32_t async = rb.async_error();
    add(r, "fenced submit on a GPU ring retired", ret == 0 && async == 0,
        ret ? "queue " + std::to_string(queue) + ", ring 1: " + errno_name(ret)
            : "queue " + std::to_string(queue) + ", ring 1, async_error " + std::to_string(async));
}

} // namespace

Report probe(const std::string& uri, int timeout_ms) {
    Report r;
    r.uri = uri;
    auto t = open(r, timeout_ms);
    if (!t) return r;

    // §4.5 guest checks, in Mesa's order.
    r.capset_size = t->get_capset(wire::VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&r.caps), sizeof r.caps});
    const auto& c = r.caps;
    const auto& m = c.u.msm;
    add(r, "DRM capset (id 6) offered", r.capset_size >= 0,
        r.capset_size >= 0 ? std::to_string(r.capset_size) + " bytes" : "host lacks it (" + std::to_string(r.capset_size) + ")");
    if (r.capset_size >= 0) {
        add(r, "context_type is msm", c.context_type == wire::VIRTGPU_DRM_CONTEXT_MSM,
            std::to_string(c.context_type) + " (" + context_type_name(c.context_type) + ")");
        add(r, "wire_format_version is 2", c.wire_format_version == wire::kDrmCapsetWireFormatVersion,
            std::to_string(c.wire_format_version));
        add(r, "host msm uapi >= 1.4", c.version_major == 1 && c.version_minor >= 4,
            std::to_string(c.version_major) + "." + std::to_string(c.version_minor) + "." +
                std::to_string(c.version_patchlevel));
        add(r, "guest-chosen iova range (va_size != 0)", m.va_size != 0,
            "[" + hex(m.va_start) + ", " + hex(m.va_start + m.va_size) + ")");
        add(r, "GPU identified (gpu_id or chip_id)", m.gpu_id != 0 || m.chip_id != 0,
            "gpu_id " + std::to_string(m.gpu_id) + ", chip_id " + hex(m.chip_id));
    }
    if (!r.error.empty()) return r;

    // Create the context and its shared page the way fd_bo does (G4, G5).
    r.rings = 1 + (m.priorities ? m.priorities : 1);
    const int ci = t->context_init(wire::VIRTGPU_CAPSET_DRM, r.rings);
    add(r, "context created", ci == 0, ci == 0 ? std::to_string(r.rings) + " rings" : "error " + std::to_string(ci));
    if (ci != 0) return r;
    BlobCreateArgs b;
    b.blob_mem = wire::VIRTGPU_BLOB_MEM_HOST3D;
    b.blob_flags = wire::VIRTGPU_BLOB_FLAG_USE_MAPPABLE;
    b.size = kShmemSize;
    uint32_t h = 0;
    void* p = nullptr;
    int e = t->create_blob(b, &h);
    if (e == 0) e = t->map_blob(h, kShmemSize, &p);
    uint32_t rsp_off = 0;
    if (e == 0) rsp_off = static_cast<const wire::vdrm_shmem*>(p)->rsp_mem_offset;
    add(r, "shared page created and mapped", e == 0 && rsp_off >= sizeof(wire::vdrm_shmem) && rsp_off < kShmemSize,
        e ? "error " + std::to_string(e) : "rsp_mem_offset " + std::to_string(rsp_off));
    if (r.error.empty()) round_trip(r, *t, p, timeout_ms);
    t->close();
    r.usable = r.error.empty();
    return r;
}

nlohmann::json to_json(const Report& r) {
    nlohmann::json j;
    j["uri"] = r.uri;
    j["usable"] = r.usable;
    j["error"] = r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error);
    if (!r.transport.empty()) {
        j["transport"] = {{"name", r.transport}, {"detail", r.detail},
                          {"host_assigns_res_id", r.host_assigns_res_id}, {"page_size", r.page_size}};
        if (r.transport == "vtest") j["transport"]["vtest_protocol"] = r.vtest_protocol;
    } else {
        j["transport"] = nullptr;
    }
    if (r.virtgpu) {
        const auto& p = *r.virtgpu;
        j["virtgpu"] = {{"node", p.node}, {"driver", p.driver}, {"is_virtio_gpu", p.is_virtio_gpu},
                        {"has_3d", p.has_3d}, {"has_blob", p.has_blob}, {"has_host_visible", p.has_host_visible},
                        {"has_context_init", p.has_context_init}, {"has_cross_device", p.has_cross_device},
                        {"capset_mask", p.capset_mask}, {"has_drm_capset", p.has_drm_capset}};
    }
    if (r.capset_size >= 0) {
        const auto& c = r.caps;
        const auto& m = c.u.msm;
        j["capset"] = {{"id", wire::VIRTGPU_CAPSET_DRM},
                       {"version", 0},
                       {"size", r.capset_size},
                       {"wire_format_version", c.wire_format_version},
                       {"drm_version", {c.version_major, c.version_minor, c.version_patchlevel}},
                       {"context_type", c.context_type},
                       {"context_type_name", context_type_name(c.context_type)},
                       {"msm",
                        {{"has_cached_coherent", m.has_cached_coherent != 0},
                         {"priorities", m.priorities},
                         {"va_start", m.va_start},
                         {"va_size", m.va_size},
                         {"gpu_id", m.gpu_id},
                         {"chip_id", m.chip_id},
                         {"gmem_size", m.gmem_size},
                         {"gmem_base", m.gmem_base},
                         {"max_freq", m.max_freq},
                         {"highest_bank_bit", m.highest_bank_bit},
                         {"ubwc_swizzle", m.ubwc_swizzle},
                         {"macrotile_mode", m.macrotile_mode},
                         {"has_raytracing", cap_bool(m.has_raytracing)},
                         {"has_preemption", cap_bool(m.has_preemption)},
                         {"uche_trap_base", m.uche_trap_base}}}};
    } else {
        j["capset"] = nullptr;
    }
    j["rings"] = r.rings;
    j["checks"] = nlohmann::json::array();
    for (const auto& c : r.checks) j["checks"].push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
    return j;
}

std::string to_table(const Report& r) {
    std::ostringstream o;
    auto row = [&](const std::string& k, const std::string& v) {
        char b[40];
        std::snprintf(b, sizeof b, "  %-22s ", k.c_str());
        o << b << v << "\n";
    };
    o << "fdnc-info: " << (r.uri.empty() ? "(default)" : r.uri) << "\n";
    if (!r.transport.empty()) {
        std::string t = r.transport + (r.detail.empty() ? "" : " (" + r.detail + ")");
        if (r.transport == "vtest") t += ", protocol " + std::to_string(r.vtest_protocol);
        row("transport", t);
        row("res_id assigned by", r.host_assigns_res_id ? "host (pipelined replies)" : "guest side");
    }
    if (r.virtgpu && r.virtgpu->is_virtio_gpu) {
        const auto& p = *r.virtgpu;
        row("render node", p.node.empty() ? "-" : p.node + " (" + p.driver + ")");
        row("virtgpu features", std::string("3d=") + (p.has_3d ? "y" : "n") + " blob=" + (p.has_blob ? "y" : "n") +
                                    " host_visible=" + (p.has_host_visible ? "y" : "n") +
                                    " context_init=" + (p.has_context_init ? "y" : "n") +
                                    " cross_device=" + (p.has_cross_device ? "y" : "n"));
        row("capset mask", hex(p.capset_mask));
    }
    if (r.capset_size >= 0) {
        const auto& c = r.caps;
        const auto& m = c.u.msm;
        row("capset", "DRM (id 6, version 0), " + std::to_string(r.capset_size) + " bytes, wire format " +
                          std::to_string(c.wire_format_version));
        row("context type", std::to_string(c.context_type) + " (" + context_type_name(c.context_type) + ")");
        row("host msm uapi", std::to_string(c.version_major) + "." + std::to_string(c.version_minor) + "." +
                                 std::to_string(c.version_patchlevel));
        row("GPU", "gpu_id " + std::to_string(m.gpu_id) + ", chip_id " + hex(m.chip_id) + ", max_freq " +
                       std::to_string(m.max_freq / 1000000) + " MHz");
        row("GMEM", std::to_string(m.gmem_size / 1024) + " KiB at " + hex(m.gmem_base));
        row("VA range", "[" + hex(m.va_start) + ", " + hex(m.va_start + m.va_size) + ") = " +
                            std::to_string(m.va_size >> 20) + " MiB");
        row("priorities", std::to_string(m.priorities) + (r.rings ? " (rings: " + std::to_string(r.rings) + ")" : ""));
        row("cached coherent", m.has_cached_coherent ? "yes" : "no");
        row("preemption", cap_bool(m.has_preemption));
        row("raytracing", cap_bool(m.has_raytracing));
        row("UBWC", "highest_bank_bit " + std::to_string(m.highest_bank_bit) + ", swizzle " + hex(m.ubwc_swizzle) +
                        ", macrotile " + std::to_string(m.macrotile_mode));
    }
    o << "checks:\n";
    for (const auto& c : r.checks) o << "  [" << (c.ok ? " ok " : "FAIL") << "] " << c.name << ": " << c.detail << "\n";
    o << (r.usable ? "result: native context usable\n" : "result: native context NOT usable: " + r.error + "\n");
    return o.str();
}

} // namespace fdnc::info
