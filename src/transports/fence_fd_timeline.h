// FenceFdTimelines: the Transport's per-ring fence points (1, 2, 3, ... per ring) backed by
// pollable fds (a guest kernel's sync_file, a vtest server's out-fence fd). A point may be
// reserved before its fd arrives (vtest pipelines the reply). Points of one ring retire in order
// (F4), so once point p is seen signaled every fd <= p is closed: at most one fd per unretired
// point stays open. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace fdnc {

enum class FenceLookup {
    Signaled, // nothing to wait for
    Pollable, // *fd is a dup the caller polls and closes
    Pending,  // the fd has not arrived yet (vtest: read the reply first)
    Unknown,  // the point was never handed out
};

class FenceFdTimelines {
public:
    explicit FenceFdTimelines(uint32_t num_rings = 0) { reset(num_rings); }
    ~FenceFdTimelines();
    FenceFdTimelines(const FenceFdTimelines&) = delete;
    FenceFdTimelines& operator=(const FenceFdTimelines&) = delete;

    void reset(uint32_t num_rings); // closes every fd
    uint32_t num_rings() const;

    uint64_t reserve(uint32_t ring);                     // next point, fd to come
    void attach(uint32_t ring, uint64_t point, int fd);  // takes ownership of fd
    uint64_t last(uint32_t ring) const;                  // last point handed out

    FenceLookup lookup(uint32_t ring, uint64_t point, int* fd);
    void mark_signaled(uint32_t ring, uint64_t point);
    // Non-blocking: closes the fds of points that already signaled (bounds open fds).
    void reap(uint32_t ring);

private:
    struct Ring {
        uint64_t assigned = 0;
        uint64_t signaled = 0;
        std::map<uint64_t, int> fds; // point -> fd (-1 while pending)
    };
    void mark_locked(Ring& r, uint64_t point);
    mutable std::mutex mu_;
    std::vector<Ring> rings_;
};

// Polls a fence fd for up to timeout_ns (< 0: no limit). `watch_fd` (or -1) is a socket whose
// hang-up means the fence can never signal. 0 = signaled, -ETIMEDOUT, -EPIPE, -errno.
int poll_fence_fd(int fd, int64_t timeout_ns, int watch_fd = -1);

} // namespace fdnc
