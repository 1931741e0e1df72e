// fdnc-delayline: a transparent vtest proxy that delays each direction by a fixed one-way time.
// Unlike fdnc-hostsim --rtt-us (a sleep before every command: a service time), bytes sent back to
// back arrive back to back, one_way later: a latency, as a virtqueue or a socket would add. Fds
// passed by SCM_RIGHTS travel with the bytes they came with. SIGINT/SIGTERM stop it cleanly.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include <CLI/CLI.hpp>

#include "delay_line.h"

namespace {

std::mutex g_log_mu;
void log_line(const std::string& line) {
    std::lock_guard g(g_log_mu);
    std::fprintf(stderr, "fdnc-delayline: %s\n", line.c_str());
}

bool make_addr(const std::string& path, sockaddr_un* addr) {
    *addr = {};
    addr->sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
    std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
    return true;
}

int connect_to(const std::string& path) {
    sockaddr_un addr;
    if (!make_addr(path, &addr)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    int r;
    while ((r = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr)) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        const int e = errno;
        ::close(s);
        errno = e;
        return -1;
    }
    return s;
}

// A socket file nobody listens on is left over from a killed run: replace it. A live one (or
// anything that is not a socket) is an error, never stolen.
int listen_on(const std::string& path, std::string* error) {
    sockaddr_un addr;
    if (!make_addr(path, &addr)) {
        *error = "socket path empty or too long: " + path;
        return -1;
    }
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        *error = std::string("socket: ") + std::strerror(errno);
        return -1;
    }
    int r = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    struct stat st;
    if (r < 0 && errno == EADDRINUSE && ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        const int probe = connect_to(path);
        if (probe >= 0) {
            ::close(probe);
        } else if (errno == ECONNREFUSED) {
            ::unlink(path.c_str());
            r = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        }
        if (r < 0) errno = EADDRINUSE;
    }
    if (r < 0 || ::listen(s, 64) < 0) {
        *error = "listen on " + path + ": " + std::strerror(errno);
        ::close(s);
        return -1;
    }
    return s;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"fdnc-delayline: a vtest proxy adding a fixed one-way delay in each direction"};
    std::string listen_path, connect_path;
    uint64_t one_way_us = 0;
    uint32_t max_clients = 16;
    bool verbose = false;
    app.add_option("--listen", listen_path, "unix socket the clients connect to")->required();
    app.add_option("--connect", connect_path, "the vtest server's unix socket (one connection per client)")
        ->required();
    app.add_option("--one-way-us", one_way_us, "delay of each direction (us); 0: a plain proxy")->required();
    app.add_option("--max-clients", max_clients, "clients proxied at once; more wait in the listen backlog")
        ->check(CLI::Range(1u, 1024u));
    app.add_flag("-v,--verbose", verbose, "log each session's end and byte counts");
    CLI11_PARSE(app, argc, argv);
    if (one_way_us > 3600ull * 1000000) {
        log_line("--one-way-us: more than an hour is not a delay line");
        return 2;
    }

    // The default 50 us slack would stretch a 100 us delay to ~150 us. Threads inherit it.
    if (::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0) < 0) log_line(std::string("PR_SET_TIMERSLACK: ") + std::strerror(errno));
    ::signal(SIGPIPE, SIG_IGN);
    // Blocked here, before any thread exists, so only the signalfd sees them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    const int sig_fd = ::signalfd(-1, &sigs, SFD_CLOEXEC);
    const int stop_fd = ::eventfd(0, EFD_CLOEXEC);
    const int reap_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sig_fd < 0 || stop_fd < 0 || reap_fd < 0) {
        log_line(std::string("signalfd/eventfd: ") + std::strerror(errno));
        return 1;
    }

    std::string error;
    const int listen_fd = listen_on(listen_path, &error);
    if (listen_fd < 0) {
        log_line(error);
        return 1;
    }

    fdnc::delayline::Config cfg;
    cfg.one_way_ns = static_cast<int64_t>(one_way_us) * 1000;
    cfg.stop_fd = stop_fd;
    cfg.log = log_line;
    cfg.verbose = verbose;
    std::list<std::unique_ptr<fdnc::delayline::Session>> sessions;
    uint64_t served = 0;

    log_line("listening on " + listen_path);
    for (;;) {
        pollfd p[3] = {{sig_fd, POLLIN, 0}, {reap_fd, POLLIN, 0}, {listen_fd, POLLIN, 0}};
        // At the limit the listener is not polled: new clients wait in the backlog.
        const nfds_t n = sessions.size() < max_clients ? 3 : 2;
        if (::poll(p, n, -1) < 0) {
            if (errno == EINTR) continue;
            log_line(std::string("poll: ") + std::strerror(errno));
            break;
        }
        if (p[0].revents) break;
        if (p[1].revents) {
            uint64_t v;
            [[maybe_unused]] ssize_t r = ::read(reap_fd, &v, sizeof v);
            sessions.remove_if([](const auto& s) { return s->done(); });
        }
        if (n == 3 && p[2].revents) {
            const int client = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) {
                if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                    log_line(std::string("accept: ") + std::strerror(errno));
                continue;
            }
            const int server = connect_to(connect_path);
            if (server < 0) {
                // The client sees EOF, as if it had reached a dead server directly.
                log_line("connect to " + connect_path + ": " + std::strerror(errno));
                ::close(client);
                continue;
            }
            ++served;
            sessions.push_back(std::make_unique<fdnc::delayline::Session>(client, server, cfg, [reap_fd] {
                const uint64_t one = 1;
                [[maybe_unused]] ssize_t r = ::write(reap_fd, &one, sizeof one);
            }));
        }
    }

    // Bounded: pollers wake on stop_fd; a writer asleep until a chunk's due time wakes within
    // one_way. Undelivered chunks close their fds.
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(stop_fd, &one, sizeof one);
    for (auto& s : sessions) s->stop();
    sessions.clear();
    ::close(listen_fd);
    ::unlink(listen_path.c_str());
    ::close(sig_fd);
    ::close(stop_fd);
    ::close(reap_fd);
    log_line("stopped after " + std::to_string(served) + " clients");
    return 0;
}
