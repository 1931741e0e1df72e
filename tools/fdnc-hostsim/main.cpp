// fdnc-hostsim: a vtest server (PROTOCOL.md §8) backed by host_sim's msm renderer model, so fdnc's
// vtest transport (or Mesa's vdrm_vpipe) can run without a GPU. Each client gets its own host
// context and GPU address space; a malformed client is dropped with a logged reason while the
// others carry on. SIGINT/SIGTERM stop it cleanly and remove the socket.
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "host_sim/msm_renderer.h"
#include "host_sim/vtest_server.h"
#include "virtio_proto/vtest_wire.h"

namespace {

std::atomic<fdnc::VtestServer*> g_server{nullptr};

void on_signal(int) {
    if (fdnc::VtestServer* s = g_server.load()) s->stop();
}

std::mutex g_log_mu;
void log_line(const std::string& line) {
    std::lock_guard g(g_log_mu);
    std::fprintf(stderr, "fdnc-hostsim: %s\n", line.c_str());
}

bool parse_fail_spec(const std::string& spec, fdnc::host::KernelOp* op, uint32_t* nth, int* err) {
    static const std::map<std::string, fdnc::host::KernelOp> ops = {
        {"gem_new", fdnc::host::KernelOp::GemNew},
        {"set_iova", fdnc::host::KernelOp::SetIova},
        {"get_iova", fdnc::host::KernelOp::GetIova},
        {"submit", fdnc::host::KernelOp::Submit}};
    static const std::map<std::string, int> errs = {
        {"ENOSPC", ENOSPC}, {"ENOMEM", ENOMEM}, {"EBUSY", EBUSY}, {"EINVAL", EINVAL}, {"EIO", EIO}, {"EFAULT", EFAULT}};
    const auto a = spec.find(':'), b = spec.rfind(':');
    if (a == std::string::npos || b == a) return false;
    auto oit = ops.find(spec.substr(0, a));
    auto eit = errs.find(spec.substr(b + 1));
    if (oit == ops.end() || eit == errs.end()) return false;
    try {
        *nth = static_cast<uint32_t>(std::stoul(spec.substr(a + 1, b - a - 1)));
    } catch (...) {
        return false;
    }
    *op = oit->second;
    *err = -eit->second;
    return *nth > 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"fdnc-hostsim: a vtest server over the host_sim msm model (one context per client)"};
    std::string socket_path = fdnc::vtest::default_socket_path();
    uint64_t va_start = 0, va_size = 0, chip_id = 0, memory_limit = 0;
    uint32_t gpu_id = 0, rtt_us = 0, gpu_us = 0, max_clients = 0, priorities = 0;
    std::string era = "classic";
    std::vector<std::string> fails;
    bool verbose = false;
    std::string kernel_log;
    app.add_option("--socket", socket_path, "unix socket path (default: $VTEST_SOCKET_NAME or /tmp/.virgl_test)");
    app.add_option("--va-start", va_start, "GPU VA range start reported in the capset (0: model default)");
    app.add_option("--va-size", va_size, "GPU VA range size (0: model default)");
    app.add_option("--gpu-id", gpu_id, "MSM_PARAM_GPU_ID (0: model default, 630)");
    app.add_option("--chip-id", chip_id, "MSM_PARAM_CHIP_ID (0: model default)");
    app.add_option("--priorities", priorities, "MSM_PARAM_PRIORITIES = host GPU timelines (0: default 3)");
    app.add_option("--rtt-us", rtt_us, "injected host latency before each command (us)");
    app.add_option("--gpu-us", gpu_us, "GPU execution time of every submit (us)");
    app.add_option("--memory-limit", memory_limit, "GEM memory beyond this fails with ENOMEM (bytes; 0: 1 TiB)");
    app.add_option("--era", era, "host kernel era: classic (vma use tracking), novma (6.6+) or vmbind (iova released on GEM_CLOSE)")
        ->check(CLI::IsMember({"classic", "novma", "vmbind"}));
    app.add_option("--fail", fails, "inject a kernel failure OP:NTH:ERRNO, OP in gem_new,set_iova,get_iova,submit "
                                    "(e.g. gem_new:3:ENOSPC); repeatable");
    bool multi_clients = false;
    app.add_flag("--multi-clients", multi_clients,
                 "serve up to 64 connections at once (default: one at a time, like virgl_test_server --no-fork)");
    app.add_option("--max-clients", max_clients, "connections served at once (overrides --multi-clients)");
    app.add_flag("-v,--verbose", verbose, "log every host refusal too");
    app.add_option("--kernel-log", kernel_log,
                   "append one line per kernel-model call to FILE, in drm_shim's FDNC_SHIM_LOG format "
                   "(the realhost suite compares it with the real host's)");
    CLI11_PARSE(app, argc, argv);

    fdnc::host::HostSimConfig cfg;
    if (va_start) cfg.kernel.va_start = va_start;
    if (va_size) cfg.kernel.va_size = va_size;
    if (gpu_id) cfg.kernel.gpu.gpu_id = gpu_id;
    if (chip_id) cfg.kernel.gpu.chip_id = chip_id;
    if (priorities) cfg.kernel.gpu.priorities = priorities;
    if (memory_limit) cfg.kernel.memory_limit = memory_limit;
    cfg.kernel.gpu_exec_us = gpu_us;
    cfg.kernel.era = era == "novma"    ? fdnc::host::KernelEra::NoVmaTracking
                     : era == "vmbind" ? fdnc::host::KernelEra::VmBind
                                       : fdnc::host::KernelEra::Classic;
    if (verbose) cfg.log_sink = [](const std::string& l) { log_line("host: " + l); };
    std::FILE* klog = nullptr;
    if (!kernel_log.empty()) {
        klog = std::fopen(kernel_log.c_str(), "ae");
        if (!klog) {
            log_line("--kernel-log " + kernel_log + ": " + std::strerror(errno));
            return 2;
        }
        cfg.kernel.call_log = [klog](const std::string& l) {
            static std::mutex mu;
            std::lock_guard g(mu);
            std::fprintf(klog, "%s\n", l.c_str());
            std::fflush(klog);
        };
    }
    fdnc::host::MsmRenderer host(cfg);
    if (!host.probe_ok()) {
        log_line("the host model's probe failed (va_size 0 or msm minor < 9): no DRM capset to offer");
        return 1;
    }
    for (const std::string& f : fails) {
        fdnc::host::KernelOp op;
        uint32_t nth;
        int err;
        if (!parse_fail_spec(f, &op, &nth, &err)) {
            log_line("bad --fail '" + f + "' (want OP:NTH:ERRNO, e.g. gem_new:3:ENOSPC)");
            return 2;
        }
        host.inject_kernel_failure(op, nth, err);
    }

    fdnc::VtestServerConfig scfg;
    scfg.socket_path = socket_path;
    scfg.max_clients = max_clients ? max_clients : multi_clients ? 64 : 1;
    scfg.limits.command_delay_us = rtt_us;
    scfg.log = log_line;
    std::string error;
    auto server = fdnc::VtestServer::listen(host, scfg, &error);
    if (!server) {
        log_line(error);
        return 1;
    }
    g_server = server.get();
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    server->run();
    g_server = nullptr;
    log_line("served " + std::to_string(server->clients_accepted()) + " clients, dropped " +
             std::to_string(server->clients_dropped()));
    server.reset(); // joins clients, removes the socket
    return 0; // klog stays open until exit: the host's destructor may still log
}
