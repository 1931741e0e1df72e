// A stand-in for a host process that dies, run with the shim preloaded by the drm_shim test (no
// test framework inside, whose own fatal-signal handlers would answer first):
//   dying_host ill       a trap instruction (what a compiler emits on a path it proved undefined)
//   dying_host overflow  unbounded recursion on the main thread
//   dying_host signal    waits for a signal from outside (writes "ready" to stdout first)
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

[[gnu::noinline]] unsigned recurse_forever(unsigned depth) {
    if (depth == ~0u) return 0; // never: the stack runs out long before
    volatile char frame[1024];
    frame[depth % sizeof frame] = static_cast<char>(depth);
    return recurse_forever(depth + 1) + static_cast<unsigned>(frame[0]);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    if (std::strcmp(argv[1], "ill") == 0) __builtin_trap();
    if (std::strcmp(argv[1], "overflow") == 0) return static_cast<int>(recurse_forever(0));
    if (std::strcmp(argv[1], "signal") == 0) {
        std::puts("ready");
        std::fflush(stdout);
        for (;;) pause();
    }
    return 2;
}
