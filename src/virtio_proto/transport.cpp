#include "transport.h"

namespace fdnc {

namespace {
thread_local uint64_t t_host_blocks = 0;
thread_local const char* t_last_host_block = "";
thread_local uint64_t t_host_wakes = 0;
} // namespace

uint64_t host_blocks_on_this_thread() { return t_host_blocks; }
const char* last_host_block_on_this_thread() { return t_last_host_block; }

uint64_t host_wakes_on_this_thread() { return t_host_wakes; }
void note_host_wake() { ++t_host_wakes; }

void note_host_block(const char* what) {
    ++t_host_blocks;
    t_last_host_block = what;
}

} // namespace fdnc
