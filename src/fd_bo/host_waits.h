// Every place the guest blocks on the host, by reason. The mission is to keep bo_new off this list;
// the counters are public (fdnc_stats, fdnc-replay) so anybody can check. Each is counted after the
// call and only if it blocked: the transports note every block on the calling thread
// (note_host_block, virtio_proto/transport.h), and the Device classifies it here.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace fdnc {

enum class HostWait : uint32_t {
    SyncRequest, // a request whose response the caller needs (GET_PARAM, SUBMITQUEUE_NEW, ...)
    PipeWait,    // waiting for a submit's fence
    CpuPrep,     // cpu_prep: GPU work using the bo, then the host-side prep
    MapSync,     // map after a host-side write (upload) that has not landed yet
    ResourceId,  // the transport had to wait for a resource id (vtest's pipelined blob replies)
    VaPressure,  // the address space was full until in-flight submits retired
    HostIova,    // the old path: the host assigns a new buffer's iova (--iova=host baseline)
    Map,         // a first CPU mapping the host had to provide (vtest: EXPORT_FD; inproc: a round trip)
    Share,       // dma-buf export or import through the host
    Teardown,    // device close waits for outstanding work
    Count,
};

const char* host_wait_name(HostWait w);

class HostWaitCounters {
public:
    void count(HostWait w) { counts_[static_cast<size_t>(w)].fetch_add(1, std::memory_order_relaxed); }
    uint64_t get(HostWait w) const { return counts_[static_cast<size_t>(w)].load(std::memory_order_relaxed); }
    uint64_t total() const {
        uint64_t t = 0;
        for (auto& c : counts_) t += c.load(std::memory_order_relaxed);
        return t;
    }

private:
    std::array<std::atomic<uint64_t>, static_cast<size_t>(HostWait::Count)> counts_{};
};

} // namespace fdnc
