// fdnc-info: like vulkaninfo/eglinfo for msm native contexts. Prints the transport, the DRM
// capset (ids, VA range, rings) and the checks a guest driver makes (PROTOCOL.md §4.5), as a
// table or --json. Exit status: 0 = a native context is usable, 2 = it is not, 1 = bad usage.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "info_report.h"

int main(int argc, char** argv) {
    CLI::App app{"fdnc-info: probe a freedreno native context (virtio-gpu DRM capset) and say if it is usable"};
    std::string uri = "virtgpu:";
    bool json = false;
    int timeout_ms = 3000;
    app.add_option("uri", uri,
                   "where to look: virtgpu[:/dev/dri/renderDNNN] (default, inside a guest), "
                   "vtest[:/socket/path] (default socket $VTEST_SOCKET_NAME or /tmp/.virgl_test), "
                   "inproc[:k=v,...] (the built-in host model)");
    app.add_flag("--json", json, "machine-readable output");
    app.add_option("--timeout-ms", timeout_ms, "bound on each vtest socket read/write");
    app.footer("Exit status: 0 = native context usable, 2 = not usable (the reason is printed), 1 = bad usage.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 1;
    }
    const fdnc::info::Report r = fdnc::info::probe(uri, timeout_ms);
    if (json) std::cout << fdnc::info::to_json(r).dump(2) << "\n";
    else std::cout << fdnc::info::to_table(r);
    return r.usable ? 0 : 2;
}
