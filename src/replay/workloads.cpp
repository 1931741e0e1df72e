#include <cstdio>
#include "replay/workloads.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "fd_bo/bo.h"

namespace fdnc::replay {

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint64_t kPage = 4096;

uint64_t pages(uint64_t bytes) { return (bytes + kPage - 1) & ~(kPage - 1); }

// Builds one stream; keeps bo ids unique across the workload.
class Gen {
public:
    Gen(Workload& w, uint64_t seed, uint32_t stream) : w_(w), rng_(seed * 0x9E3779B97F4A7C15ull + stream + 1) {
        if (w_.streams.size() <= stream) w_.streams.resize(stream + 1);
        ev_ = &w_.streams[stream].events;
    }
    uint64_t uniform(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }
    // Log-uniform sizes, page multiples: most small, a few big (how GL buffers are spread).
    uint64_t size_log(uint64_t lo, uint64_t hi) {
        std::uniform_real_distribution<double> d(std::log2(double(lo)), std::log2(double(hi)));
        return pages(uint64_t(std::exp2(d(rng_))));
    }
    bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

    uint32_t alloc(uint64_t size, uint32_t flags = 0) {
        Event e;
        e.kind = EventKind::Alloc;
        e.bo = w_.bo_ids++;
        e.size = pages(size);
        e.flags = flags;
        ev_->push_back(std::move(e));
        return w_.bo_ids - 1;
    }
    void write(uint32_t bo, uint64_t offset, uint64_t len) {
        Event e;
        e.kind = EventKind::Write;
        e.bo = bo;
        e.offset = offset;
        e.size = len;
        e.pattern = static_cast<uint32_t>(rng_());
        ev_->push_back(std::move(e));
    }
    void submit(std::vector<CmdRef> cmds, std::vector<uint32_t> bos) {
        for (const CmdRef& c : cmds)
            if (std::find(bos.begin(), bos.end(), c.bo) == bos.end()) bos.push_back(c.bo);
        Event e;
        e.kind = EventKind::Submit;
        e.text = 0;
        e.cmds = std::move(cmds);
        e.bos = std::move(bos);
        ev_->push_back(std::move(e));
    }
    void free(uint32_t bo) {
        Event e;
        e.kind = EventKind::Free;
        e.bo = bo;
        ev_->push_back(std::move(e));
    }
    void frame() {
        Event e;
        e.kind = EventKind::Frame;
        ev_->push_back(std::move(e));
    }
    // A command buffer with `n` ranges written into it.
    std::vector<CmdRef> cmd_buffer(uint32_t bo, uint64_t size, uint32_t n) {
        std::vector<CmdRef> cmds;
        const uint64_t each = std::max<uint64_t>(64, (size / n) & ~uint64_t{63});
        for (uint32_t i = 0; i < n; i++) {
            const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(each, uniform(256, 4096)) & ~uint64_t{3});
            write(bo, i * each, len);
            cmds.push_back({bo, i * each, len});
        }
        return cmds;
    }

private:
    Workload& w_;
    std::mt19937_64 rng_;
    std::vector<Event>* ev_;
};

// A GL-like frame loop: long-lived textures, per-frame command/state buffers, streaming vertex
// and uniform uploads, transient render targets, now and then a big allocation.
void gen_gl_frames(Workload& w, const WorkloadParams& p, uint32_t stream) {
    Gen g(w, p.seed, stream);
    std::vector<uint32_t> textures;
    for (int i = 0; i < 24; i++) {
        const uint32_t t = g.alloc(g.size_log(64 * KiB, 4 * MiB), kBoNoMap);
        g.write(t, 0, 4 * KiB);
        textures.push_back(t);
    }
    struct Big { uint32_t bo; uint32_t until; };
    std::vector<Big> big;
    for (uint32_t f = 0; f < p.frames; f++) {
        std::vector<uint32_t> transient;
        const uint32_t cmd = g.alloc(g.size_log(16 * KiB, 64 * KiB));
        const uint32_t state = g.alloc(g.size_log(4 * KiB, 16 * KiB));
        g.write(state, 0, 1 * KiB);
        transient.insert(transient.end(), {cmd, state});
        const uint32_t nvb = static_cast<uint32_t>(g.uniform(1, 3));
        for (uint32_t i = 0; i < nvb; i++) {
            const uint32_t vb = g.alloc(g.size_log(64 * KiB, 256 * KiB));
            g.write(vb, 0, 2 * KiB);
            transient.push_back(vb);
        }
        const uint32_t nub = static_cast<uint32_t>(g.uniform(4, 8));
        for (uint32_t i = 0; i < nub; i++) {
            const uint32_t ub = g.alloc(4 * KiB);
            g.write(ub, 0, 256);
            transient.push_back(ub);
        }
        if (g.chance(0.5)) transient.push_back(g.alloc(g.size_log(1 * MiB, 8 * MiB), kBoNoMap));
        if (f % 30 == 29) big.push_back({g.alloc(g.size_log(32 * MiB, 128 * MiB), kBoNoMap), f + 10});
        if (f % 20 == 19) {  // texture churn
            for (int i = 0; i < 2; i++) {
                const size_t k = g.uniform(0, textures.size() - 1);
                g.free(textures[k]);
                textures[k] = g.alloc(g.size_log(64 * KiB, 4 * MiB), kBoNoMap);
                g.write(textures[k], 0, 4 * KiB);
            }
        }
        auto cmds = g.cmd_buffer(cmd, 16 * KiB, static_cast<uint32_t>(g.uniform(2, 4)));
        std::vector<uint32_t> used = transient;
        for (size_t i = 0; i < 8; i++) used.push_back(textures[g.uniform(0, textures.size() - 1)]);
        for (const Big& b : big) used.push_back(b.bo);
        std::sort(used.begin(), used.end());
        used.erase(std::unique(used.begin(), used.end()), used.end());
        g.submit(std::move(cmds), std::move(used));
        for (uint32_t bo : transient) g.free(bo);
        for (auto it = big.begin(); it != big.end();) {
            if (it->until <= f) { g.free(it->bo); it = big.erase(it); }
            else ++it;
        }
        g.frame();
    }
    for (const Big& b : big) g.free(b.bo);
    for (uint32_t t : textures) g.free(t);
}

// A dispatch loop: long-lived inputs/outputs, per dispatch a command buffer, a uniform buffer
// and 1-4 scratch buffers sized by the dispatch.
void gen_compute(Workload& w, const WorkloadParams& p, uint32_t stream) {
    Gen g(w, p.seed, stream);
    std::vector<uint32_t> io;
    for (int i = 0; i < 6; i++) {
        io.push_back(g.alloc(g.size_log(1 * MiB, 16 * MiB), kBoNoMap));
        g.write(io.back(), 0, 4 * KiB);
    }
    for (uint32_t f = 0; f < p.frames; f++) {
        const uint32_t cmd = g.alloc(16 * KiB);
        const uint32_t ub = g.alloc(4 * KiB);
        g.write(ub, 0, 512);
        std::vector<uint32_t> used = io;
        used.insert(used.end(), {cmd, ub});
        std::vector<uint32_t> scratch;
        const uint32_t ns = static_cast<uint32_t>(g.uniform(1, 4));
        for (uint32_t i = 0; i < ns; i++) scratch.push_back(g.alloc(g.size_log(256 * KiB, 8 * MiB), kBoNoMap));
        used.insert(used.end(), scratch.begin(), scratch.end());
        g.submit(g.cmd_buffer(cmd, 16 * KiB, 1), used);
        g.free(cmd);
        g.free(ub);
        for (uint32_t s : scratch) g.free(s);
        g.frame();
    }
    for (uint32_t b : io) g.free(b);
}

// Allocation-heavy: each thread keeps up to 256 live bos, allocating and freeing at random
// (4 KiB..1 MiB, now and then 16 MiB), with a submit every 8 operations.
void gen_alloc_storm(Workload& w, const WorkloadParams& p, uint32_t stream) {
    Gen g(w, p.seed, stream);
    std::vector<uint32_t> live;
    for (uint32_t f = 0; f < p.frames; f++) {
        for (int op = 0; op < 32; op++) {
            if (!live.empty() && (live.size() >= 256 || g.chance(0.45))) {
                const size_t k = g.uniform(0, live.size() - 1);
                g.free(live[k]);
                live[k] = live.back();
                live.pop_back();
            } else {
                const uint64_t size = g.chance(0.02) ? 16 * MiB : g.size_log(4 * KiB, 1 * MiB);
                live.push_back(g.alloc(size));
                if (g.chance(0.5)) g.write(live.back(), 0, 256);
            }
            if (op % 8 == 7) {
                const uint32_t cmd = g.alloc(4 * KiB);
                std::vector<uint32_t> used;
                for (size_t i = 0; i < std::min<size_t>(8, live.size()); i++)
                    used.push_back(live[g.uniform(0, live.size() - 1)]);
                std::sort(used.begin(), used.end());
                used.erase(std::unique(used.begin(), used.end()), used.end());
                g.submit(g.cmd_buffer(cmd, 4 * KiB, 1), std::move(used));
                g.free(cmd);
            }
        }
        g.frame();
    }
    for (uint32_t b : live) g.free(b);
}

struct Def {
    std::string_view name;
    uint32_t frames;
    uint32_t threads;
    void (*gen)(Workload&, const WorkloadParams&, uint32_t);
};
constexpr std::array<Def, 3> kDefs{{
    {"gl-frames", 300, 1, gen_gl_frames},
    {"compute", 400, 1, gen_compute},
    {"alloc-storm", 60, 4, gen_alloc_storm},
}};
constexpr std::array<std::string_view, 3> kNames{"gl-frames", "compute", "alloc-storm"};

} // namespace

uint64_t Workload::event_count() const {
    uint64_t n = 0;
    for (const Stream& s : streams) n += s.events.size();
    return n;
}

uint64_t Workload::count(EventKind k) const {
    uint64_t n = 0;
    for (const Stream& s : streams)
        for (const Event& e : s.events) n += e.kind == k;
    return n;
}

std::span<const std::string_view> workload_names() { return kNames; }

std::optional<Workload> make_workload(std::string_view name, const WorkloadParams& params, std::string* error) {
    for (const Def& d : kDefs) {
        if (d.name != name) continue;
        WorkloadParams p = params;
        if (p.frames == 0) p.frames = d.frames;
        if (p.threads == 0) p.threads = d.threads;
        Workload w;
        w.name = std::string(name);
        w.texts.push_back("fdnc-replay/" + w.name);
        // Streams are generated one after another from (seed, stream index): the same
        // parameters always give the same events, whatever the thread count does at run time.
        for (uint32_t t = 0; t < p.threads; t++) d.gen(w, p, t);
        return w;
    }
    if (error) {
        *error = "unknown workload '" + std::string(name) + "' (known:";
        for (std::string_view n : kNames) *error += " " + std::string(n);
        *error += ")";
    }
    return std::nullopt;
}

std::string original_placement_misfit(const Workload& w, uint64_t va_start, uint64_t va_size) {
    if (!w.original_addresses || w.va_end <= w.va_min) return {};
    const uint64_t va_end = va_start + va_size;
    if (va_size != 0 && w.va_min >= va_start && w.va_end <= va_end) return {};
    char b[160];
    std::snprintf(b, sizeof b, "the capture's addresses [0x%llx, 0x%llx) lie outside the host's VA range [0x%llx, 0x%llx)",
                  static_cast<unsigned long long>(w.va_min), static_cast<unsigned long long>(w.va_end),
                  static_cast<unsigned long long>(va_start), static_cast<unsigned long long>(va_end));
    return b;
}

Workload from_capture(const rd::Capture& c, std::string name, IovaPlacement placement) {
    Workload w;
    w.name = std::move(name);
    w.gpu_id = c.gpu_id;
    w.chip_id = c.chip_id;
    w.bytes = c.bytes;
    w.bo_ids = static_cast<uint32_t>(c.lifetimes.size());
    w.original_addresses = placement == IovaPlacement::Original;
    w.streams.resize(1);
    std::vector<Event>& ev = w.streams[0].events;
    const rd::LifetimeEvents le = rd::lifetime_events(c);
    for (size_t s = 0; s < c.submits.size(); s++) {
        const rd::Submit& sub = c.submits[s];
        for (uint32_t lt : le.alloc_before[s]) {
            Event e;
            e.kind = EventKind::Alloc;
            e.bo = lt;
            e.size = c.lifetimes[lt].size;
            if (w.original_addresses) {
                e.iova = c.lifetimes[lt].iova;
                w.va_min = w.va_min ? std::min(w.va_min, e.iova) : e.iova;
                w.va_end = std::max(w.va_end, e.iova + e.size);
            }
            ev.push_back(std::move(e));
        }
        Event submit;
        submit.kind = EventKind::Submit;
        for (const rd::SubmitBuffer& b : sub.buffers) {
            for (const rd::Upload& u : b.uploads) {
                Event e;
                e.kind = EventKind::Write;
                e.bo = b.lifetime;
                e.offset = u.offset_in_buffer;
                e.size = u.data.size;
                e.data_offset = u.data.offset;
                ev.push_back(std::move(e));
            }
            submit.bos.push_back(b.lifetime);
        }
        for (const rd::CmdStream& cs : sub.cmds) {
            if (cs.buffer == rd::kNoBuffer || cs.size_bytes == 0) continue;
            submit.cmds.push_back({sub.buffers[cs.buffer].lifetime, cs.offset_in_buffer, cs.size_bytes});
        }
        if (!sub.cmd.empty()) {
            auto it = std::find(w.texts.begin(), w.texts.end(), sub.cmd);
            submit.text = static_cast<uint32_t>(it - w.texts.begin());
            if (it == w.texts.end()) w.texts.push_back(sub.cmd);
        }
        ev.push_back(std::move(submit));
        for (uint32_t lt : le.free_after[s]) {
            Event e;
            e.kind = EventKind::Free;
            e.bo = lt;
            ev.push_back(std::move(e));
        }
        Event f;
        f.kind = EventKind::Frame;
        ev.push_back(std::move(f));
    }
    return w;
}

void fill_pattern(uint32_t pattern, uint64_t offset, std::span<uint8_t> out) {
    // Cheap, position-dependent bytes (xorshift of the word index), so uploads are not all zero.
    for (size_t i = 0; i < out.size(); i++) {
        uint64_t x = (offset + i) / 4 * 0x9E3779B97F4A7C15ull ^ pattern;
        x ^= x >> 29;
        out[i] = static_cast<uint8_t>(x >> (8 * ((offset + i) % 4)));
    }
}

} // namespace fdnc::replay
