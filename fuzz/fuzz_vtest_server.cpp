// Target (b): the vtest server's framing (VtestSession, what fdnc-hostsim runs per client). The
// input is everything a hostile client sends; it is written into a socketpair, the write side is
// shut, and the session serves it to the end. The session must end with a reason, never crash,
// leak an fd or block past its message timeout.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "host_ops.h"
#include "host_sim/msm_renderer.h"
#include "host_sim/vtest_server.h"
#include "virtio_proto/vtest_wire.h"

namespace {

using namespace fdnc;

constexpr size_t kMaxInput = 64 * 1024; // fits the socket buffer: the whole input is queued first

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > kMaxInput) return 0;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) __builtin_trap();
    const int client = sv[0], server = sv[1];
    if (vtest::write_full(client, data, size, 1000) != 0) __builtin_trap();
    ::shutdown(client, SHUT_WR);

    // Replies (and the fds they carry) are drained so the server never blocks on a full buffer.
    std::thread drain([client] {
        uint8_t buf[4096];
        std::vector<int> fds;
        for (;;) {
            const int r = vtest::read_full(client, buf, 1, 2000, &fds);
            vtest::close_fds(fds);
            if (r != 0) break;
        }
    });

    {
        host::MsmRenderer h(fuzz::fuzz_host_config());
        VtestLimits limits;
        limits.max_submit_dwords = 1u << 16;
        limits.max_blob_size = 64ull << 20;
        limits.max_resources = 1024;
        limits.message_timeout_ms = 200;
        limits.in_fence_timeout_ms = 200;
        VtestSession session(server, h, 1, limits);
        h.set_fence_callback([&session](uint32_t, uint32_t ring, uint64_t id) { session.fence_retired(ring, id); });
        (void)session.serve();
        h.set_fence_callback([](uint32_t, uint32_t, uint64_t) {});
    }
    ::shutdown(server, SHUT_RDWR);
    drain.join();
    ::close(client);
    ::close(server);
    return 0;
}
