#include "replay/replayer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>

#include <sys/resource.h>

#include "fd_bo/bo.h"
#include "fd_bo/pipe.h"
#include "virtio_proto/msm_uapi.h"
#include "virtio_proto/transport.h"

namespace fdnc::replay {

namespace {

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

struct ProbeSample {
    rusage ru{};
    RequestThreadCounters rc{};
    uint64_t wakes = 0;
};

ProbeSample probe_now() {
    ProbeSample p;
    getrusage(RUSAGE_THREAD, &p.ru);
    p.rc = RequestBuffer::thread_counters();
    p.wakes = host_wakes_on_this_thread();
    return p;
}

BoNewProbe probe_diff(const ProbeSample& a, const ProbeSample& b) {
    BoNewProbe d;
    d.minor_faults = static_cast<uint32_t>(b.ru.ru_minflt - a.ru.ru_minflt);
    d.major_faults = static_cast<uint32_t>(b.ru.ru_majflt - a.ru.ru_majflt);
    d.voluntary_switches = static_cast<uint32_t>(b.ru.ru_nvcsw - a.ru.ru_nvcsw);
    d.involuntary_switches = static_cast<uint32_t>(b.ru.ru_nivcsw - a.ru.ru_nivcsw);
    d.transport_calls = static_cast<uint32_t>(b.rc.transport_calls - a.rc.transport_calls);
    d.flushes = static_cast<uint32_t>(b.rc.flushes - a.rc.flushes);
    d.flushed_bytes = b.rc.flushed_bytes - a.rc.flushed_bytes;
    d.transport_ns = b.rc.transport_ns - a.rc.transport_ns;
    d.flush_ns = b.rc.flush_ns - a.rc.flush_ns;
    d.host_wakes = static_cast<uint32_t>(b.wakes - a.wakes);
    return d;
}

// State shared by the stream threads of one mode.
struct Shared {
    const Workload& w;
    const ReplayOptions& opts;
    Device& dev;
    int64_t t0;
    std::vector<Bo*> bos;                     // by bo id; each id belongs to one stream
    std::vector<BoRange> ranges;              // by bo id (opts.ranges)
    std::vector<std::vector<uint8_t>> shadow; // by bo id (opts.record): written since recorded
    std::vector<uint8_t> dirty;               // by bo id (opts.record): written since recorded
    std::mutex record_lock;                   // recorded order == flush order
    std::atomic<uint64_t> done_events{0};
    std::atomic<uint64_t> inflight{0};
    std::atomic<bool> stop{false};
    int64_t rel(int64_t t) const { return t - t0; }
};

struct ThreadOut {
    ModeResult r;
    std::vector<Span> spans;
};

void run_stream(Shared& sh, uint32_t tid, const Stream& stream, ThreadOut& out) {
    ModeResult& r = out.r;
    int err = 0;
    Pipe* pipe = sh.dev.pipe_new(0, &err);
    if (!pipe) {
        r.error = std::string("pipe_new failed: ") + std::strerror(-err);
        sh.done_events.fetch_add(stream.events.size());
        return;
    }
    auto span = [&](const char* name, int64_t a, int64_t b) {
        if (sh.opts.trace) out.spans.push_back({name, tid, sh.rel(a), b - a});
    };
    // A fence wait that does not end signaled is a failed run: a host that never retires work
    // must not pass with inflated frame times.
    auto wait_done = [&](int ret, uint32_t fence) {
        if (ret == 0) return;
        if (r.wait_failures++ == 0 && r.error.empty())
            r.error = "waiting for fence " + std::to_string(fence) + " failed: " + std::strerror(-ret);
    };
    struct InFlight { uint32_t fence; int64_t t_flush; uint64_t index; };
    std::deque<InFlight> inflight;
    std::vector<int64_t> retired_at;     // by this thread's submit index (-1 = not seen yet)
    std::vector<int64_t> last_use;       // by bo id: this thread's last submit index using it
    if (sh.opts.ranges) last_use.assign(sh.w.bo_ids, -1);
    std::vector<uint32_t> frame_fences;
    uint32_t last_fence = 0;
    int64_t last_frame = now_ns();
    std::vector<uint8_t> scratch;

    auto reap = [&](int64_t t) {
        while (!inflight.empty() && pipe->is_retired(inflight.front().fence)) {
            span("submit", inflight.front().t_flush, t);
            retired_at[inflight.front().index] = t;
            inflight.pop_front();
            sh.inflight.fetch_sub(1, std::memory_order_relaxed);
        }
    };

    for (const Event& e : stream.events) {
        switch (e.kind) {
        case EventKind::Alloc: {
            ProbeSample p0;
            if (sh.opts.trace) p0 = probe_now();
            const uint64_t w0 = host_blocks_on_this_thread();
            const int64_t a = now_ns();
            Bo* bo = e.iova ? sh.dev.bo_new_at(e.iova, e.size, e.flags, nullptr, &err)
                            : sh.dev.bo_new(e.size, e.flags, nullptr, &err);
            const int64_t b = now_ns();
            r.bo_new_ns.push_back(static_cast<uint64_t>(b - a));
            if (sh.opts.trace) {
                const ProbeSample p1 = probe_now();
                span("bo_new", a, b);
                out.spans.back().has_probe = true;
                out.spans.back().probe = probe_diff(p0, p1);
            }
            // This thread's own blocks (DeviceStats::bo_new_waits counts the same way).
            if (host_blocks_on_this_thread() != w0) span("host_wait", a, b);
            if (!bo) {
                if (r.alloc_failures++ == 0)
                    r.error = "bo_new(" + std::to_string(e.size) + ") failed: " + std::strerror(-err);
                break;
            }
            sh.bos[e.bo] = bo;
            r.bos++;
            if (sh.opts.ranges) sh.ranges[e.bo] = BoRange{bo->iova(), bo->size(), sh.rel(b), -1, -1};
            break;
        }
        case EventKind::Write: {
            Bo* bo = sh.bos[e.bo];
            if (!bo || e.size == 0) break;
            const uint8_t* src;
            if (e.data_offset == kPatternData) {
                scratch.resize(e.size);
                fill_pattern(e.pattern, e.offset, scratch);
                src = scratch.data();
            } else if (e.data_offset <= sh.w.bytes.size() && e.size <= sh.w.bytes.size() - e.data_offset) {
                src = sh.w.bytes.data() + e.data_offset;
            } else {
                r.write_failures++;
                break;
            }
            if (bo->upload(src, e.offset, e.size) != 0) {
                r.write_failures++;
                break;
            }
            r.writes++;
            if (sh.opts.record) {
                auto& s = sh.shadow[e.bo];
                if (s.size() < e.offset + e.size) s.resize(e.offset + e.size);
                std::copy(src, src + e.size, s.begin() + static_cast<ptrdiff_t>(e.offset));
                sh.dirty[e.bo] = 1;
            }
            break;
        }
        case EventKind::Submit: {
            Submit s(pipe);
            bool ok = true;
            for (uint32_t id : e.bos) {
                if (Bo* bo = sh.bos[id]) s.add_bo(bo, wire::MSM_SUBMIT_BO_READ | wire::MSM_SUBMIT_BO_WRITE);
                else ok = false;
            }
            for (const CmdRef& c : e.cmds) {
                if (Bo* bo = sh.bos[c.bo]) s.add_cmd(bo, c.offset, c.size);
                else ok = false;
            }
            if (!ok) {
                r.submit_failures++;
                break;
            }
            uint32_t fence = 0;
            const int64_t a = now_ns();
            int ret;
            if (sh.opts.record) {
                std::lock_guard<std::mutex> g(sh.record_lock);
                ret = s.flush(&fence);
                if (ret == 0) {
                    rd::RdWriter& wr = *sh.opts.record;
                    if (e.text != kNoText && e.text < sh.w.texts.size()) wr.cmd(sh.w.texts[e.text]);
                    std::vector<uint32_t> ids = e.bos;
                    std::sort(ids.begin(), ids.end(), [&](uint32_t x, uint32_t y) {
                        return sh.bos[x]->iova() < sh.bos[y]->iova();
                    });
                    for (uint32_t id : ids) {
                        std::span<const uint8_t> contents;
                        if (sh.dirty[id]) contents = sh.shadow[id];
                        wr.buffer(sh.bos[id]->iova(), sh.bos[id]->size(), contents);
                        sh.dirty[id] = 0;
                        sh.shadow[id].clear();
                    }
                    for (const CmdRef& c : e.cmds) wr.cmdstream(sh.bos[c.bo]->iova() + c.offset, c.size);
                }
            } else {
                ret = s.flush(&fence);
            }
            const int64_t b = now_ns();
            span("flush", a, b);
            if (ret != 0) {
                if (r.submit_failures++ == 0 && r.error.empty())
                    r.error = std::string("submit flush failed: ") + std::strerror(-ret);
                break;
            }
            r.submits++;
            last_fence = fence;
            if (sh.opts.ranges)
                for (uint32_t id : e.bos) last_use[id] = static_cast<int64_t>(retired_at.size());
            inflight.push_back({fence, b, retired_at.size()});
            retired_at.push_back(-1);
            const uint64_t n = sh.inflight.fetch_add(1, std::memory_order_relaxed) + 1;
            r.max_inflight = std::max(r.max_inflight, n);
            break;
        }
        case EventKind::Free: {
            Bo* bo = sh.bos[e.bo];
            if (!bo) break;
            sh.bos[e.bo] = nullptr;
            bo->unref();
            if (sh.opts.ranges) sh.ranges[e.bo].t_free_ns = sh.rel(now_ns());
            break;
        }
        case EventKind::Frame: {
            const int64_t t = now_ns();
            if (tid == 0) r.frame_ns.push_back(static_cast<uint64_t>(t - last_frame));
            span("frame", last_frame, t);
            last_frame = t;
            r.frames++;
            frame_fences.push_back(last_fence);
            // Throttle like a GL driver: at most frames_in_flight frames queued ahead of the GPU.
            if (frame_fences.size() > sh.opts.frames_in_flight) {
                const uint32_t f = frame_fences[frame_fences.size() - 1 - sh.opts.frames_in_flight];
                if (f && !pipe->is_retired(f)) {
                    const int64_t a = now_ns();
                    wait_done(pipe->wait(f, sh.dev.options().sync_timeout_ns), f);
                    span("host_wait", a, now_ns());
                }
            }
            break;
        }
        }
        reap(now_ns());
        sh.done_events.fetch_add(1, std::memory_order_relaxed);
    }
    if (last_fence) {
        const int64_t a = now_ns();
        if (!pipe->is_retired(last_fence)) {
            wait_done(pipe->wait(last_fence, sh.dev.options().sync_timeout_ns), last_fence);
            span("host_wait", a, now_ns());
        }
    }
    reap(now_ns());
    const int64_t end = sh.rel(now_ns());
    for (const InFlight& f : inflight) retired_at[f.index] = now_ns();
    sh.inflight.fetch_sub(inflight.size(), std::memory_order_relaxed);
    delete pipe;
    if (sh.opts.ranges) {
        for (uint32_t id = 0; id < last_use.size(); id++) {
            if (last_use[id] < 0) continue;
            BoRange& br = sh.ranges[id];
            const int64_t ret_t = retired_at[static_cast<size_t>(last_use[id])];
            const int64_t rel_ret = ret_t < 0 ? end : sh.rel(ret_t);
            if (br.t_free_ns >= 0) br.t_release_ns = std::max(br.t_free_ns, rel_ret);
        }
    }
}

} // namespace

std::string default_inproc_uri(uint32_t rtt_us, std::optional<uint32_t> gpu_us, const Workload& w) {
    std::string uri = "inproc:rtt_us=" + std::to_string(rtt_us);
    if (gpu_us) uri += ",gpu_us=" + std::to_string(*gpu_us);
    if (w.original_addresses && w.va_end > w.va_min) {
        constexpr uint64_t kAlign = 16ull << 20;
        const uint64_t def_start = wire::kAdrenoVmStart, def_end = def_start + wire::kDefaultVaSize;
        if (w.va_min < def_start || w.va_end > def_end) {
            // Never start at 0: iova 0 means "no iova" on the wire (A5).
            const uint64_t start = std::max<uint64_t>(std::min(def_start, w.va_min & ~(kAlign - 1)), kAlign);
            const uint64_t end = std::max(def_end, (w.va_end + kAlign - 1) & ~(kAlign - 1));
            char b[96];
            std::snprintf(b, sizeof b, ",va_start=0x%llx,va_size=0x%llx", static_cast<unsigned long long>(start),
                          static_cast<unsigned long long>(end - start));
            uri += b;
        }
    }
    return uri;
}

const char* mode_name(IovaMode m) { return m == IovaMode::Guest ? "guest" : "host"; }

LatencySummary summarize(std::vector<uint64_t> ns) {
    LatencySummary s;
    s.count = ns.size();
    if (ns.empty()) return s;
    std::sort(ns.begin(), ns.end());
    auto pct = [&](double p) {
        const size_t i = std::min(ns.size() - 1, static_cast<size_t>(p * double(ns.size() - 1) + 0.5));
        return double(ns[i]) / 1000.0;
    };
    s.p50_us = pct(0.50);
    s.p99_us = pct(0.99);
    s.max_us = double(ns.back()) / 1000.0;
    double sum = 0;
    for (uint64_t v : ns) sum += double(v);
    s.mean_us = sum / double(ns.size()) / 1000.0;
    return s;
}

ModeResult run_mode(const Workload& w, IovaMode mode, const ReplayOptions& opts, const DeviceFactory& open) {
    ModeResult res;
    res.mode = mode_name(mode);
    DeviceOptions dopts = opts.device;
    dopts.iova_mode = mode;
    std::string error;
    std::unique_ptr<Device> dev = open(dopts, &error);
    if (!dev) {
        res.error = "cannot open device: " + error;
        return res;
    }
    if (opts.record) {
        const auto& caps = dev->caps();
        const uint32_t gpu = w.gpu_id ? w.gpu_id : caps.u.msm.gpu_id;
        std::optional<uint64_t> chip = w.chip_id;
        if (!w.gpu_id && !chip && caps.u.msm.chip_id) chip = caps.u.msm.chip_id;
        opts.record->header(gpu, chip);
    }
    Shared sh{w, opts, *dev, now_ns(), {}, {}, {}, {}, {}, {}, {}, {}};
    sh.bos.assign(w.bo_ids, nullptr);
    if (opts.ranges) sh.ranges.assign(w.bo_ids, BoRange{});
    if (opts.record) {
        sh.shadow.resize(w.bo_ids);
        sh.dirty.assign(w.bo_ids, 0);
    }
    // IovaMode::Host cannot place a buffer: a capture then runs at host-chosen addresses.
    Workload const* wl = &w;
    Workload heap_copy;
    if (w.original_addresses && mode == IovaMode::Host) {
        heap_copy = w;
        for (Stream& s : heap_copy.streams)
            for (Event& e : s.events) e.iova = 0;
        wl = &heap_copy;
    }
    const uint64_t total = wl->event_count();

    std::vector<ThreadOut> outs(wl->streams.size());
    std::mutex mon_lock;
    std::condition_variable mon_cv;
    std::thread monitor([&] {
        bool drew = false;
        int64_t next_draw = 0;
        std::unique_lock<std::mutex> lk(mon_lock);
        while (!sh.stop.load()) {
            const int64_t t = now_ns();
            const DeviceStats st = dev->stats();
            res.counters.push_back({sh.rel(t), st.va_live_bytes, st.va_quarantined_bytes,
                                    sh.inflight.load(std::memory_order_relaxed)});
            res.max_quarantined_ranges = std::max<uint64_t>(res.max_quarantined_ranges, dev->quarantined_ranges());
            if (opts.progress && sh.rel(t) > 1'000'000'000 && t >= next_draw) {
                const uint64_t done = sh.done_events.load();
                const int pct = total ? int(done * 100 / total) : 100;
                char bar[41];
                for (int i = 0; i < 40; i++) bar[i] = i < pct * 40 / 100 ? '#' : '.';
                bar[40] = 0;
                std::fprintf(stderr, "\r  %-5s [%s] %3d%%  %" PRIu64 "/%" PRIu64 " events", res.mode.c_str(), bar,
                             pct, done, total);
                std::fflush(stderr);
                drew = true;
                next_draw = t + 100'000'000;
            }
            mon_cv.wait_for(lk, std::chrono::nanoseconds(opts.sample_every_ns));
        }
        if (drew) std::fprintf(stderr, "\r\033[K");
    });
    std::vector<std::thread> threads;
    for (uint32_t i = 0; i < wl->streams.size(); i++)
        threads.emplace_back([&, i] { run_stream(sh, i, wl->streams[i], outs[i]); });
    for (auto& t : threads) t.join();
    res.wall_ns = now_ns() - sh.t0;
    {
        std::lock_guard<std::mutex> g(mon_lock);
        sh.stop.store(true);
    }
    mon_cv.notify_all();
    monitor.join();

    for (ThreadOut& o : outs) {
        ModeResult& r = o.r;
        if (res.error.empty() && !r.error.empty()) res.error = r.error;
        res.bos += r.bos;
        res.alloc_failures += r.alloc_failures;
        res.submits += r.submits;
        res.submit_failures += r.submit_failures;
        res.writes += r.writes;
        res.write_failures += r.write_failures;
        res.frames += r.frames;
        res.bo_new_ns.insert(res.bo_new_ns.end(), r.bo_new_ns.begin(), r.bo_new_ns.end());
        if (res.frame_ns.empty()) res.frame_ns = std::move(r.frame_ns);
        res.max_inflight = std::max(res.max_inflight, r.max_inflight);
        res.spans.insert(res.spans.end(), o.spans.begin(), o.spans.end());
    }
    // Bos a capture never frees (still live at its end) go now, so the device closes clean.
    for (Bo*& bo : sh.bos)
        if (bo) {
            bo->unref();
            bo = nullptr;
        }
    dev->retire();
    res.stats = dev->stats();
    // Only bo_new waits for these two reasons (ResourceId can also come from a flush on vtest).
    res.bo_new_host_waits = res.stats.bo_new_waits;
    const DeviceStats final_stats = res.stats;
    res.counters.push_back({sh.rel(now_ns()), final_stats.va_live_bytes, final_stats.va_quarantined_bytes, 0});
    if (opts.ranges) {
        for (const BoRange& br : sh.ranges)
            if (br.size) res.ranges.push_back(br);
    }
    dev.reset();
    return res;
}

} // namespace fdnc::replay
