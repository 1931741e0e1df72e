// gen_seeds OUTDIR: writes the seed corpora of every fuzz target, made by the project's own code
// (nothing is copied from real captures):
//   OUTDIR/host_ccmd/     host calls recorded from a synthetic fd_bo run over the in-process host
//   OUTDIR/vtest_server/  vtest client streams carrying those recorded ccmd batches
//   OUTDIR/guest_replies/ a real host_sim capset + shared page + honest host replies
//   OUTDIR/rd/            .rd and .rd.gz captures written by RdWriter
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/pipe.h"
#include "host_ops.h"
#include "hostile_host.h"
#include "host_sim/inproc_host.h"
#include "host_sim/msm_renderer.h"
#include "replay/rd_writer.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/virtgpu_uapi.h"
#include "virtio_proto/vtest_wire.h"

namespace {

using namespace fdnc;
using Bytes = std::vector<uint8_t>;

void put(Bytes& b, const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
}
template <class T> void put(Bytes& b, T v) { put(b, &v, sizeof v); }

bool write_file(const std::string& path, const Bytes& b) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
    return std::fclose(f) == 0 && ok;
}

bool make_dir(const std::string& p) { return ::mkdir(p.c_str(), 0755) == 0 || errno == EEXIST; }

// One recorded host call in fuzz/host_ops.h's format.
struct Record {
    fuzz::HostOp op;
    Bytes args;
    Bytes encode() const {
        Bytes b;
        put(b, static_cast<uint8_t>(op));
        put(b, static_cast<uint16_t>(args.size()));
        put(b, args.data(), args.size());
        return b;
    }
};

// Forwards to a real transport and records what its host receives.
class RecordingTransport : public Transport {
public:
    explicit RecordingTransport(std::unique_ptr<Transport> t) : t_(std::move(t)) {}
    std::vector<Record>* log = nullptr;

    TransportInfo info() const override { return t_->info(); }
    int get_capset(uint32_t id, uint32_t v, std::span<uint8_t> out) override { return t_->get_capset(id, v, out); }
    int context_init(uint32_t c, uint32_t n) override { return t_->context_init(c, n); }
    int create_blob(const BlobCreateArgs& a, uint32_t* handle) override {
        const int r = t_->create_blob(a, handle);
        if (r != 0 || a.blob_id == wire::kShmemBlobId) return r; // the harness made the shared page
        if (!a.cmd.empty()) log->push_back({fuzz::HostOp::SubmitCmd, Bytes(a.cmd.begin(), a.cmd.end())});
        uint32_t res_id = 0;
        t_->resource_id(*handle, &res_id);
        Bytes b;
        put(b, res_id);
        put(b, a.blob_mem);
        put(b, a.blob_flags);
        put(b, a.size);
        put(b, a.blob_id);
        log->push_back({fuzz::HostOp::CreateBlob, b});
        return r;
    }
    int resource_id(uint32_t h, uint32_t* res_id, bool* waited) override { return t_->resource_id(h, res_id, waited); }
    int execbuf(const ExecbufArgs& a, TransportFence* f) override {
        log->push_back({fuzz::HostOp::SubmitCmd, Bytes(a.cmd.begin(), a.cmd.end())});
        const int r = t_->execbuf(a, f);
        if (r == 0 && a.fence_out && f) {
            Bytes b;
            put(b, a.ring_idx);
            put(b, f->point);
            log->push_back({fuzz::HostOp::Fence, b});
            log->push_back({fuzz::HostOp::Advance, Bytes(4, 0)});
        }
        return r;
    }
    int wait_fence(TransportFence f, int64_t t) override { return t_->wait_fence(f, t); }
    int map_blob(uint32_t h, uint64_t s, void** p) override {
        uint32_t res_id = 0;
        if (t_->resource_id(h, &res_id) == 0 && log && res_id != fuzz::kShmemResId) {
            Bytes b;
            put(b, res_id);
            log->push_back({fuzz::HostOp::Map, b});
        }
        return t_->map_blob(h, s, p);
    }
    void unmap_blob(uint32_t h, void* p, uint64_t s) override { t_->unmap_blob(h, p, s); }
    int close_blob(uint32_t h) override {
        uint32_t res_id = 0;
        if (t_->resource_id(h, &res_id) == 0) {
            Bytes b;
            put(b, res_id);
            log->push_back({fuzz::HostOp::Unref, b});
        }
        return t_->close_blob(h);
    }
    int export_blob_fd(uint32_t h, int* fd) override { return t_->export_blob_fd(h, fd); }
    int import_blob_fd(int fd, uint32_t* h, uint64_t* s) override { return t_->import_blob_fd(fd, h, s); }
    void close() override { t_->close(); }

private:
    std::unique_ptr<Transport> t_;
};

// A small fd_bo session: pipes, bos of several sizes (suballocated, cached, mapped, uploaded,
// named), submits, cpu_prep, frees while in flight.
std::vector<Record> record_fd_bo_run(bool suballoc) {
    std::vector<Record> log;
    InprocConfig ic;
    ic.gpu_us = 50;
    auto rec = std::make_unique<RecordingTransport>(std::make_unique<InprocTransport>(host::make_inproc_msm_host(ic)));
    rec->log = &log;
    DeviceOptions opts;
    opts.suballoc = suballoc;
    std::string err;
    auto dev = Device::open(std::move(rec), opts, &err);
    if (!dev) {
        std::fprintf(stderr, "gen_seeds: Device::open: %s\n", err.c_str());
        std::exit(1);
    }
    int e = 0;
    Pipe* pipe = dev->pipe_new(0, &e);
    Pipe* pipe2 = dev->pipe_new(1, &e);
    Bo* cmd = dev->bo_new(4096, 0, "cmd", &e);
    Bo* small = dev->bo_new(256, 0, "small", &e);
    Bo* big = dev->bo_new(1 << 20, kBoCachedCoherent, "big", &e);
    Bo* nomap = dev->bo_new(8192, kBoNoMap, "nomap", &e);
    if (!pipe || !pipe2 || !cmd || !small || !big || !nomap) std::exit(1);
    if (auto* p = static_cast<uint32_t*>(cmd->map())) p[0] = 0x70000000; // a CP_NOP-ish word
    const uint32_t words[4] = {1, 2, 3, 4};
    nomap->upload(words, 0, sizeof words);
    small->set_name("seed-small");
    for (int i = 0; i < 3; ++i) {
        Submit s(i == 2 ? pipe2 : pipe);
        s.add_cmd(cmd, 0, 64);
        s.add_bo(small, wire::MSM_SUBMIT_BO_READ);
        s.add_bo(big, wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE);
        uint32_t fence = 0;
        s.flush(&fence);
        if (i == 2) big->unref(); // freed while in flight: quarantined until the submit retires
    }
    small->cpu_prep(pipe, wire::MSM_PREP_READ, 1'000'000'000);
    pipe->wait(pipe->last_submitted(), 1'000'000'000);
    pipe2->wait(pipe2->last_submitted(), 1'000'000'000);
    small->unref();
    nomap->unref();
    cmd->unref();
    dev->retire();
    dev->trim_cache();
    delete pipe2;
    delete pipe;
    dev.reset();
    return log;
}

Bytes concat(const std::vector<Record>& log, size_t n) {
    Bytes b;
    for (size_t i = 0; i < n && i < log.size(); ++i) {
        Bytes r = log[i].encode();
        b.insert(b.end(), r.begin(), r.end());
    }
    return b;
}

// --- vtest: a client stream, §8 ---
void vmsg(Bytes& b, uint32_t cmd, std::initializer_list<uint32_t> payload) {
    put(b, static_cast<uint32_t>(payload.size()));
    put(b, cmd);
    for (uint32_t w : payload) put(b, w);
}

Bytes vtest_stream(const std::vector<Record>& log, bool with_fences) {
    Bytes b;
    const char name[8] = "fdnc";
    put(b, uint32_t{8});
    put(b, vtest::VCMD_CREATE_RENDERER);
    put(b, name, sizeof name);
    vmsg(b, vtest::VCMD_PING_PROTOCOL_VERSION, {});
    vmsg(b, vtest::VCMD_PROTOCOL_VERSION, {vtest::kProtocolVersion});
    vmsg(b, vtest::VCMD_GET_PARAM, {vtest::VCMD_PARAM_MAX_TIMELINE_COUNT});
    vmsg(b, vtest::VCMD_GET_CAPSET, {wire::VIRTGPU_CAPSET_DRM, 0});
    vmsg(b, vtest::VCMD_CONTEXT_INIT, {wire::VIRTGPU_CAPSET_DRM});
    vmsg(b, vtest::VCMD_RESOURCE_CREATE_BLOB,
         {vtest::VCMD_BLOB_TYPE_HOST3D, vtest::VCMD_BLOB_FLAG_MAPPABLE, wire::kShmemSize, 0, 0, 0});
    for (const Record& r : log) {
        if (r.op == fuzz::HostOp::CreateBlob) {
            uint32_t w[7];
            std::memcpy(w, r.args.data(), sizeof w); // res_id, mem, flags, size lo/hi, blob_id lo/hi
            vmsg(b, vtest::VCMD_RESOURCE_CREATE_BLOB,
                 {w[1], w[2] | vtest::VCMD_BLOB_FLAG_MAPPABLE, w[3], w[4], w[5], w[6]});
        } else if (r.op == fuzz::HostOp::Unref) {
            uint32_t id;
            std::memcpy(&id, r.args.data(), 4);
            vmsg(b, vtest::VCMD_RESOURCE_UNREF, {id});
        } else if (r.op == fuzz::HostOp::SubmitCmd && r.args.size() % 4 == 0) {
            const uint32_t dw = static_cast<uint32_t>(r.args.size() / 4);
            const uint32_t flags = with_fences ? vtest::VCMD_SUBMIT_CMD2_FLAG_RING_IDX |
                                                     vtest::VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD
                                               : 0;
            put(b, 1 + vtest::kBatchDwords + dw);
            put(b, vtest::VCMD_SUBMIT_CMD2);
            const uint32_t batch[1 + vtest::kBatchDwords] = {1, flags, 1 + vtest::kBatchDwords, dw, 0, 0, 0, 0, 0};
            put(b, batch, sizeof batch);
            put(b, r.args.data(), r.args.size());
        }
    }
    vmsg(b, vtest::VCMD_RESOURCE_BUSY_WAIT, {1, vtest::kBusyWaitFlagWait});
    vmsg(b, vtest::VCMD_RESOURCE_EXPORT_FD, {1});
    return b;
}

// --- guest_replies: see fuzz_guest_replies.cpp / hostile_host.h ---
Bytes guest_replies_seed(uint8_t mode, uint8_t reply, const Bytes& ops) {
    Bytes b;
    put(b, mode);
    if (mode & 1) {
        put(b, uint8_t{1}); // bo_cache
        put(b, uint8_t{1}); // suballoc
    }
    // The page as host_sim leaves it: seqno 0, rsp_mem_offset 16 (§5.3), then zeros.
    Bytes page(64, 0);
    const uint32_t off = wire::kShmemRspMemOffset;
    std::memcpy(page.data() + 4, &off, 4);
    if (mode & 1) {
        host::MsmRenderer h;
        wire::virgl_renderer_capset_drm caps{};
        h.get_capset(wire::VIRTGPU_CAPSET_DRM, 0, {reinterpret_cast<uint8_t*>(&caps), sizeof caps});
        put(b, page.data(), page.size());
        put(b, &caps, sizeof caps);
    } else {
        put(b, page.data(), page.size());
    }
    // Ops interleaved with honest replies (reply byte + zero response bodies + fence result 0).
    for (uint8_t op : ops) {
        put(b, op);
        for (int i = 0; i < 8; ++i) put(b, uint8_t{0});
        put(b, reply);
        for (int i = 0; i < 40; ++i) put(b, uint8_t{0});
    }
    return b;
}

bool write_rd(const std::string& path, bool with_contents) {
    auto w = rd::RdWriter::create(path);
    if (!w) return false;
    rd::RdWriter& wr = w.value();
    bool ok = wr.header(630, 0x06030001) && wr.cmd("gen_seeds");
    std::vector<uint8_t> contents(256);
    for (size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<uint8_t>(i);
    for (uint64_t s = 0; s < 3; ++s) {
        const uint64_t base = 0x1'0000'0000ull + s * 0x10000;
        ok = ok && wr.buffer(base, 4096, with_contents ? std::span<const uint8_t>(contents) : std::span<const uint8_t>{});
        ok = ok && wr.buffer(base + 0x4000, 8192);
        ok = ok && wr.cmdstream(base, 64);
    }
    return wr.close() && ok;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    const std::string out = argv[1];
    bool ok = make_dir(out);
    for (const char* d : {"host_ccmd", "vtest_server", "guest_replies", "rd"}) ok = ok && make_dir(out + "/" + d);
    if (!ok) {
        std::fprintf(stderr, "gen_seeds: cannot create %s\n", out.c_str());
        return 1;
    }
    int n = 0;
    for (bool suballoc : {true, false}) {
        const auto log = record_fd_bo_run(suballoc);
        const std::string tag = suballoc ? "suballoc" : "plain";
        // Prefixes at a few points of the run, and the whole run.
        for (size_t cut : {log.size() / 4, log.size() / 2, log.size()}) {
            ok = ok && write_file(out + "/host_ccmd/" + tag + "-" + std::to_string(cut), concat(log, cut));
            ++n;
        }
        ok = ok && write_file(out + "/vtest_server/" + tag + "-fenced", vtest_stream(log, true));
        ok = ok && write_file(out + "/vtest_server/" + tag + "-unfenced", vtest_stream(log, false));
        n += 2;
    }
    const Bytes rb_ops = {0, 1, 2, 3, 4, 5, 0, 3};
    const Bytes dev_ops = {4, 0, 0, 2, 3, 5, 6, 1, 7, 0, 5, 1};
    ok = ok && write_file(out + "/guest_replies/rb-honest", guest_replies_seed(0, fuzz::kSeqnoHonest | fuzz::kWriteResponses, rb_ops));
    ok = ok && write_file(out + "/guest_replies/rb-silent", guest_replies_seed(0, fuzz::kWriteResponses, rb_ops));
    ok = ok && write_file(out + "/guest_replies/dev-honest", guest_replies_seed(1, fuzz::kSeqnoHonest | fuzz::kWriteResponses, dev_ops));
    ok = ok && write_file(out + "/guest_replies/dev-garbage", guest_replies_seed(1, fuzz::kSeqnoHonest | fuzz::kGarbage | fuzz::kAsyncError, dev_ops));
    ok = ok && write_rd(out + "/rd/synthetic.rd", true) && write_rd(out + "/rd/synthetic.rd.gz", true) &&
         write_rd(out + "/rd/no-contents.rd", false);
    n += 7;
    if (!ok) {
        std::fprintf(stderr, "gen_seeds: writing seeds failed\n");
        return 1;
    }
    std::printf("gen_seeds: %d seeds in %s\n", n, out.c_str());
    return 0;
}
