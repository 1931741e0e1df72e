// fdnc-replay: runs a buffer/submit stream (a built-in synthetic workload or an .rd capture)
// through the whole client stack, once with guest-chosen iovas (the design) and once with
// host-chosen ones (the old path), and shows them side by side.
//
// Exit status: 0 = every mode ran clean, 1 = a GPU fault, async error or failed call happened,
// 2 = bad input (unreadable capture, unwritable output, device that does not open), or usage.
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "capi/open_device.h"
#include "replay/capture_loader.h"
#include "replay/rd_writer.h"
#include "replay/replayer.h"
#include "replay/report.h"
#include "replay/report_json.h"
#include "replay/round_trip_probe.h"
#include "replay/workloads.h"
#include "transports/inproc_transport.h"
#include "virtio_proto/msm_uapi.h"

namespace {

using namespace fdnc;
using namespace fdnc::replay;

constexpr unsigned kRoundTripProbeCalls = 32;

bool write_file(const std::string& path, const std::string& text) {
    if (path == "-") {
        std::cout << text;
        return bool(std::cout);
    }
    std::ofstream f(path, std::ios::binary);
    f << text;
    f.close();
    if (!f) {
        std::fprintf(stderr, "fdnc-replay: cannot write %s\n", path.c_str());
        return false;
    }
    return true;
}

std::string base_name(const std::string& p) {
    const size_t s = p.find_last_of('/');
    return s == std::string::npos ? p : p.substr(s + 1);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"fdnc-replay: replay a buffer/submit stream through fdnc with guest-chosen iovas (the design) "
                 "and host-chosen iovas (the old path), side by side"};
    std::string workload = "gl-frames", rd_path, iova = "both", placement, uri;
    std::string json_path, trace_path, svg_path, record_path;
    uint32_t frames = 0, threads = 0, rtt_us = 200;
    std::optional<uint32_t> gpu_us;
    uint64_t seed = 1;
    bool quiet = false, bo_cache = false, suballoc = false;
    app.add_option("--workload,-w", workload, "built-in synthetic workload: gl-frames (default), compute, alloc-storm")
        ->check(CLI::IsMember({"gl-frames", "compute", "alloc-storm"}));
    app.add_option("--rd", rd_path, "replay a freedreno .rd / .rd.gz capture instead of a synthetic workload");
    app.add_option("--iova", iova,
                   "guest: the guest heap picks every iova, GEM_NEW carries it, bo_new never waits on the host; "
                   "host: the old path, one synchronous round trip per new buffer for the host's choice "
                   "(an fdnc-host-only extension ccmd, FDNC_CCMD_GEM_GET_IOVA, that a real host refuses); "
                   "both (default): guest then host on the same stream, with ratios. "
                   "With --rd, --iova=guest also lets the heap choose instead of the capture's addresses")
        ->check(CLI::IsMember({"guest", "host", "both"}));
    app.add_option("--placement", placement,
                   "capture buffers: original (default with --rd unless --iova=guest) = at the capture's "
                   "addresses; heap = wherever the guest heap puts them")
        ->check(CLI::IsMember({"original", "heap"}));
    app.add_option("--uri", uri,
                   "transport: inproc[:k=v,...] (default inproc:rtt_us=200, the built-in host model), "
                   "vtest:[socket], virtgpu:[/dev/dri/renderDNNN]");
    app.add_option("--frames", frames, "frames (dispatches, storm rounds) of the synthetic workload (0 = its default)");
    app.add_option("--threads", threads, "client threads of the synthetic workload (0 = its default)");
    app.add_option("--seed", seed, "seed of the synthetic workload");
    app.add_option("--rtt-us", rtt_us, "injected guest<->host round trip of the default inproc transport (default 200)");
    app.add_option("--gpu-us", gpu_us, "GPU time per submit of the default inproc transport");
    app.add_option("--json", json_path, "write the summary as JSON to FILE (- = stdout, the table goes to stderr)");
    app.add_option("--trace", trace_path, "write a Chrome trace-event JSON file (open in ui.perfetto.dev)");
    app.add_option("--svg", svg_path, "write an SVG picture: address space over time, bo_new latency histograms");
    app.add_option("--record", record_path, "write the replayed stream (first mode) as an .rd capture (.gz = gzip)");
    app.add_flag("--bo-cache", bo_cache, "turn the bo cache on (off by default: a cache hit never reaches the iova path)");
    app.add_flag("--suballoc", suballoc, "turn suballocation on (guest mode only; off by default, as --bo-cache)");
    app.add_flag("--quiet,-q", quiet, "no progress bar and no table (outputs and exit status only)");
    app.footer("Exit status: 0 = clean, 1 = GPU fault / async error / failed call in any mode, 2 = bad input.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }

    // --- the stream ---
    Workload w;
    RunInfo info;
    info.seed = seed;
    const bool placement_explicit = !placement.empty();
    std::optional<rd::Capture> capture;
    if (!rd_path.empty()) {
        auto cap = rd::load_capture(rd_path);
        if (!cap) {
            std::fprintf(stderr, "fdnc-replay: %s: %s\n", rd_path.c_str(), cap.error().what().c_str());
            return 2;
        }
        capture = cap.value();
        if (placement.empty()) placement = iova == "guest" ? "heap" : "original";
        w = from_capture(cap.value(), base_name(rd_path),
                         placement == "original" ? IovaPlacement::Original : IovaPlacement::Heap);
        info.source = rd_path;
        info.frames = static_cast<uint32_t>(cap.value().submits.size());
        info.threads = 1;
        uint64_t skipped = 0;
        for (auto& [type, n] : cap.value().skipped_sections) skipped += n;
        if (skipped && !quiet) std::fprintf(stderr, "fdnc-replay: %llu unknown sections skipped\n",
                                            static_cast<unsigned long long>(skipped));
    } else {
        std::string err;
        auto made = make_workload(workload, WorkloadParams{frames, threads, seed}, &err);
        if (!made) {
            std::fprintf(stderr, "fdnc-replay: %s\n", err.c_str());
            return 2;
        }
        w = std::move(*made);
        placement = "heap";
        info.source = "synthetic";
        info.frames = static_cast<uint32_t>(w.count(EventKind::Frame) / std::max<size_t>(1, w.streams.size()));
        info.threads = static_cast<uint32_t>(w.streams.size());
    }
    info.workload = w.name;
    info.placement = placement;
    if (uri.empty()) {
        uri = default_inproc_uri(rtt_us, gpu_us, w);
    } else if (uri.rfind("inproc", 0) == 0) {
        const bool has_rtt = uri.find("rtt_us=") != std::string::npos;
        if (!has_rtt) uri += std::string(uri.find(':') == std::string::npos ? ":" : (uri.back() == ':' ? "" : ",")) +
                             "rtt_us=" + std::to_string(rtt_us);
    }
    // Any host but the default in-process one is asked first (a device opened and closed again,
    // before the runs): a capture at its original addresses must fit its VA range, and host mode
    // needs fdnc's extension ccmd, which a real host does not serve (asking would cost the context).
    if (uri.rfind("inproc", 0) != 0 && (w.original_addresses || iova != "guest")) {
        std::string err;
        if (auto probe = open_device(uri, DeviceOptions{}, &err)) {
            const std::string misfit = w.original_addresses && iova != "host"
                                           ? original_placement_misfit(w, probe->va_range_start(), probe->va_range_size())
                                           : std::string();
            const bool extensions = probe->host_has_fdnc_extensions();
            probe.reset();
            if (!misfit.empty() && placement_explicit) {
                std::fprintf(stderr, "fdnc-replay: --placement original: %s\n", misfit.c_str());
                return 2;
            }
            if (!misfit.empty()) {
                w = from_capture(*capture, base_name(rd_path), IovaPlacement::Heap);
                placement = "heap";
                info.placement = placement;
                info.placement_reason = misfit;
                if (!quiet) std::fprintf(stderr, "fdnc-replay: heap placement: %s\n", misfit.c_str());
            }
            if (!extensions) {
                const std::string why = "this host does not serve fdnc's extension ccmd FDNC_CCMD_GEM_GET_IOVA that "
                                        "host-chosen iovas need (only fdnc-hostsim and inproc: do)";
                if (iova == "host") {
                    std::fprintf(stderr, "fdnc-replay: --iova host: %s\n", why.c_str());
                    return 2;
                }
                iova = "guest";
                info.host_mode_skipped = why;
                if (!quiet) std::fprintf(stderr, "fdnc-replay: host mode skipped: %s\n", why.c_str());
            }
        } // else: the runs report why the device does not open
    }
    info.transport = uri;
    if (uri.rfind("inproc", 0) == 0)
        if (auto cfg = parse_inproc_uri(uri)) info.injected_rtt_us = cfg->rtt_us;
    info.bo_cache = bo_cache;
    info.suballoc = suballoc;

    // --- run ---
    std::optional<rd::RdWriter> recorder;
    if (!record_path.empty()) {
        auto r = rd::RdWriter::create(record_path);
        if (!r) {
            std::fprintf(stderr, "fdnc-replay: %s\n", r.error().what().c_str());
            return 2;
        }
        recorder.emplace(std::move(r.value()));
    }
    ReplayOptions opts;
    opts.device.bo_cache = bo_cache;
    opts.device.suballoc = suballoc;
    opts.device.debug_name = "fdnc-replay";
    opts.trace = !trace_path.empty();
    opts.ranges = !svg_path.empty();
    opts.progress = !quiet && isatty(STDERR_FILENO);
    const DeviceFactory open = [&](const DeviceOptions& d, std::string* err) { return open_device(uri, d, err); };
    std::vector<IovaMode> run;
    if (iova != "host") run.push_back(IovaMode::Guest);
    if (iova != "guest") run.push_back(IovaMode::Host);
    if (iova != "guest") {
        // Host mode pays a round trip per bo_new: measure one on an idle context first.
        std::string err;
        info.idle_round_trip = probe_round_trip(open, kRoundTripProbeCalls, &err);
        if (!info.idle_round_trip.count && !quiet) std::fprintf(stderr, "fdnc-replay: %s\n", err.c_str());
    }
    std::vector<ModeResult> results;
    bool open_failed = false;
    for (IovaMode m : run) {
        opts.record = results.empty() && recorder ? &*recorder : nullptr;
        results.push_back(run_mode(w, m, opts, open));
        if (results.back().error.rfind("cannot open device", 0) == 0) open_failed = true;
    }
    if (recorder && !recorder->close()) {
        std::fprintf(stderr, "fdnc-replay: %s\n", recorder->error().what().c_str());
        return 2;
    }

    // --- outputs ---
    bool io_ok = true;
    if (!quiet && !open_failed) {
        const std::string table = format_table(info, results);
        if (json_path == "-") std::cerr << table;
        else std::cout << table;
    }
    if (!json_path.empty()) io_ok &= write_file(json_path, summary_json(info, results));
    if (!trace_path.empty()) io_ok &= write_file(trace_path, trace_json(info, results));
    if (!svg_path.empty()) io_ok &= write_file(svg_path, render_svg(info, results));
    const std::string problems = format_problems(results);
    if (!problems.empty()) std::fprintf(stderr, "fdnc-replay: problems:\n%s", problems.c_str());
    if (open_failed || !io_ok) return 2;
    for (const ModeResult& r : results)
        if (!r.clean()) return 1;
    return 0;
}
