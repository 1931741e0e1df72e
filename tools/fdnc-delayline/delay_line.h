// One proxied vtest connection with a fixed one-way delay in each direction. A reader stamps each
// chunk with its arrival time and queues it; a writer sends it at arrival + one_way. Chunks that
// are already due go out back to back, so the delay is a latency, not a per-message service time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fdnc::delayline {

struct Config {
    int64_t one_way_ns = 0;
    // Readable (never drained) once the process is stopping: wakes every poll().
    int stop_fd = -1;
    std::function<void(const std::string&)> log;
    bool verbose = false;
};

// What one recvmsg returned. Owns its fds until they are sent (closed either way).
struct Chunk {
    std::vector<uint8_t> bytes;
    std::vector<int> fds;
    int64_t due_ns = 0;

    Chunk() = default;
    Chunk(const Chunk&) = delete;
    Chunk& operator=(const Chunk&) = delete;
    Chunk(Chunk&& o) noexcept;
    Chunk& operator=(Chunk&& o) noexcept;
    ~Chunk();
    void close_fds();
};

// src -> dst, one reader and one writer thread.
class Direction {
public:
    Direction(const char* name, int src, int dst, const Config& cfg, std::function<void()> on_thread_exit);
    ~Direction(); // stops and joins
    void start();
    Direction(const Direction&) = delete;
    Direction& operator=(const Direction&) = delete;

    void stop();
    uint64_t bytes_forwarded() const { return forwarded_.load(); }
    uint64_t fds_forwarded() const { return fds_forwarded_.load(); }

private:
    void read_loop();
    void write_loop();
    bool wait_ready(int fd, short events) const;
    bool send_chunk(Chunk& c);
    bool send_bytes(const uint8_t* p, size_t n, const std::vector<int>& fds);

    const char* name_;
    int src_, dst_;
    const Config& cfg_;
    std::function<void()> on_thread_exit_;

    std::mutex mu_;
    std::condition_variable data_cv_;  // writer: queue non-empty, EOF or stop
    std::condition_variable space_cv_; // reader: queue below its bound or stop
    std::deque<Chunk> queue_;
    size_t queued_bytes_ = 0;
    bool eof_ = false;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> forwarded_{0}, fds_forwarded_{0};

    std::thread reader_, writer_;
};

// Closes its fd on destruction.
struct OwnedFd {
    int fd;
    explicit OwnedFd(int f) : fd(f) {}
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    ~OwnedFd();
};

// A client and its server connection; owns both sockets. on_done runs (on a worker thread) once
// all four threads have finished; the owner then destroys the session.
class Session {
public:
    Session(int client, int server, const Config& cfg, std::function<void()> on_done);
    ~Session(); // stops, joins, closes both sockets
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    bool done() const { return running_.load() == 0; }
    void stop();

private:
    void thread_exit();

    OwnedFd client_, server_; // declared first: closed after the directions have joined
    const Config& cfg_;
    std::function<void()> on_done_;
    std::atomic<int> running_{4};
    Direction to_server_, to_client_;
};

int64_t now_ns();

} // namespace fdnc::delayline
