// Prints one line of capture facts per .rd/.rd.gz argument; exit 1 if any fails to load.
// Buffers are counted at 4 KiB allocation granularity (load_capture's default).
// Registered as a test over the shared traces so the numbers show up in the test log.
#include <cinttypes>
#include <cstdio>

#include "replay/capture_loader.h"

int main(int argc, char** argv) {
    int rc = 0;
    std::printf("%-24s %6s %12s %7s %5s %7s %6s %12s %8s %6s %-23s %s\n", "capture", "gpu", "chip_id",
                "submits", "cmds", "buffers", "ids", "content_B", "maxlive", "skip", "iova range",
                "anomalies(merged/outside/trailing)");
    for (int i = 1; i < argc; ++i) {
        auto r = fdnc::rd::load_capture(argv[i]);
        const char* name = argv[i];
        for (const char* p = argv[i]; *p; ++p)
            if (*p == '/') name = p + 1;
        if (!r) {
            std::printf("%-24s ERROR %s\n", name, r.error().what().c_str());
            rc = 1;
            continue;
        }
        const auto& c = r.value();
        const auto st = c.stats();
        char chip[32] = "none";
        if (c.chip_id) std::snprintf(chip, sizeof chip, "0x%" PRIx64, *c.chip_id);
        std::printf("%-24s %6u %12s %7" PRIu64 " %5" PRIu64 " %7" PRIu64 " %6" PRIu64 " %12" PRIu64
                    " %8" PRIu64 " %6" PRIu64 " 0x%09" PRIx64 "-0x%09" PRIx64 " %" PRIu64 "/%" PRIu64
                    "/%" PRIu64 "\n",
                    name, c.gpu_id, chip, st.submits, st.cmdstreams, st.buffers, st.identities,
                    st.content_bytes, st.max_live_buffers, st.skipped_sections, st.iova_min, st.iova_end,
                    c.anomalies.merged_decls, c.anomalies.cmds_outside_buffers, c.anomalies.trailing_decls);
    }
    return rc;
}
