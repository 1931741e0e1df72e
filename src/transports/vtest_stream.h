// The vtest client's stream: the socket, the pipelined reply queue (replies are read in stream
// order, only when a res_id, a mapping or a fence is first needed), the handle table and the
// fence-fd timelines. Private to src/transports/vtest_*.cpp; VtestTransport's methods (the
// Transport interface) sit on top of it in vtest_transport.cpp.
#pragma once

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "transports/fence_fd_timeline.h"
#include "transports/vtest_transport.h"
#include "virtio_proto/vtest_wire.h"

namespace fdnc {

namespace vtest_client {

using Clock = std::chrono::steady_clock;

inline constexpr uint32_t kPageSize = 4096;
inline constexpr size_t kMaxPendingReplies = 256; // bounds memory and the server's send buffer
inline constexpr int kMaxHeldFds = 64;            // blob fds kept for a first map (else EXPORT_FD)
inline constexpr uint32_t kMaxCapsetDwords = 16384;

inline std::string errno_text(int neg_errno) { return std::strerror(-neg_errno); }

} // namespace vtest_client

struct VtestTransport::Impl {
    enum class ReplyKind { Blob, Fence, Kick };
    struct Reply {
        ReplyKind kind;
        uint32_t handle = 0;
        uint32_t ring = 0;
        uint64_t point = 0;
    };
    struct Entry {
        bool used = false;
        bool pending = false;         // create reply not read yet
        bool close_requested = false; // closed before its res_id was known
        uint32_t res_id = 0;
        uint64_t size = 0;
        int fd = -1; // from the create reply, kept for a first map
        void* map = nullptr;
        uint64_t map_size = 0;
    };

    mutable std::mutex mu;
    int sock = -1;
    VtestOptions opts;
    uint32_t version = 0;
    bool dead = false;
    std::string why;
    bool ctx_inited = false;
    uint32_t num_rings = 0;
    std::vector<Entry> entries; // handle = index + 1 (V9)
    std::vector<uint32_t> free_handles;
    std::deque<Reply> replies;
    FenceFdTimelines timelines;
    int held_fds = 0;
    uint64_t kicks = 0;
    // Replies are read in stream order by whoever needs one. A fence waiter whose reply has not
    // arrived polls the socket without the lock (the reader); a path that reads replies under
    // the lock meanwhile may consume the very reply the reader waits for, so it kicks the
    // reader's eventfd, and every read wakes the other waiters on replies_cv. (Without this a
    // waiter slept until its timeout with its fence fd already attached: issue 13.)
    bool reader_active = false;
    int reader_kick = -1;
    std::condition_variable replies_cv;

    ~Impl();

    // The stream position is lost after any I/O failure: the transport is dead from then on.
    int fail(int err, const std::string& what);
    Entry* entry(uint32_t handle);
    uint32_t new_handle();
    void release(uint32_t handle);
    int read(void* buf, size_t n, const char* what);
    int read_fd(int* fd, const char* what);
    int expect_hdr(uint32_t len, uint32_t cmd, const char* what);

    // Called under the lock after every reply read (see reader_active).
    void replies_progressed();

    // Reads the oldest pipelined reply (stream order = request order).
    int read_one_reply();
    int read_one_reply_raw();
    int drain_all();

    // Reads replies until `done()` holds. Only the io timeout bounds each read: the server answers
    // a create or a submit as soon as it has processed it, independent of GPU time.
    template <class Done> int drain_until(Done done) {
        while (!done() && !replies.empty())
            if (int r = read_one_reply(); r < 0) return r;
        return 0;
    }

    // Writes bytes; while the socket is full, reads pending replies so a server blocked on
    // sending them to us can go on reading (no mutual deadlock).
    int send(const void* buf, size_t n, const char* what);
    int wait_writable(const char* what);
    int send_fd(int fd, const char* what);
    int send_msg(uint32_t cmd, std::span<const uint32_t> payload, const char* what);
    int send_unref(uint32_t res_id);

    // §8.4: one batch; the ccmd words follow the batch table.
    int send_submit(std::span<const uint8_t> cmd, uint32_t flags, uint32_t ring);
    static std::vector<uint32_t> encode_submit(std::span<const uint8_t> cmd, uint32_t flags, uint32_t ring);

    // Keeps the count of unread replies bounded (each holds a server send-buffer slot and an fd).
    int bound_pending();
    int connect_and_negotiate(VtestProbe* probe);
};

} // namespace fdnc
