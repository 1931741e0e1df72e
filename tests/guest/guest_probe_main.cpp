// The guest suite's own Catch2 main: exit 77 (meson's SKIP) when there is no virtio_gpu render
// node, i.e. everywhere except inside a guest, so the host's `meson test` passes untouched.
#include <cstdio>

#include "../catch_run.h"
#include "real_node.h"

int main(int argc, char** argv) {
    const std::string node = fdnc::guest_test::find_virtio_gpu_node();
    if (node.empty()) {
        std::printf("guest suite skipped: no virtio_gpu render node in /dev/dri (run it inside a guest: "
                    "scripts/qemu-ci.sh)\n");
        return 77;
    }
    std::printf("fdnc-guest-node: %s\n", fdnc::guest_test::describe_node(node).c_str());
    std::fflush(stdout);
    return fdnc_catch_run(argc, argv);
}
