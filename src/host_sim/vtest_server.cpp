#include "host_sim/vtest_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "virtio_proto/vtest_wire.h"

namespace fdnc {

namespace {

std::string err_text(int neg) { return std::strerror(neg < 0 ? -neg : neg); }

} // namespace

struct VtestServer::Client {
    int sock = -1;
    uint32_t ctx_id = 0;
    std::thread thread;
    std::atomic<bool> done{false};
};

VtestServer::VtestServer(Host& host, VtestServerConfig cfg) : host_(host), cfg_(std::move(cfg)) {}

void VtestServer::log(const std::string& line) const {
    if (cfg_.log) cfg_.log(line);
}

std::unique_ptr<VtestServer> VtestServer::listen(Host& host, VtestServerConfig cfg, std::string* error) {
    auto fail = [&](const std::string& why) -> std::unique_ptr<VtestServer> {
        if (error) *error = why;
        return nullptr;
    };
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (cfg.socket_path.empty() || cfg.socket_path.size() >= sizeof addr.sun_path)
        return fail("socket path '" + cfg.socket_path + "' is empty or too long");
    std::memcpy(addr.sun_path, cfg.socket_path.c_str(), cfg.socket_path.size() + 1);

    std::unique_ptr<VtestServer> s(new VtestServer(host, std::move(cfg)));
    s->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->listen_fd_ < 0) return fail("socket: " + err_text(-errno));
    struct stat st;
    if (::lstat(s->cfg_.socket_path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return fail(s->cfg_.socket_path + " exists and is not a socket");
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const bool live = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        if (probe >= 0) ::close(probe);
        if (live) return fail("a server already listens on " + s->cfg_.socket_path);
        ::unlink(s->cfg_.socket_path.c_str()); // stale socket of a dead server
    }
    if (::bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return fail("bind " + s->cfg_.socket_path + ": " + err_text(-errno));
    if (::listen(s->listen_fd_, 64) != 0) return fail("listen: " + err_text(-errno));
    s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->left_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd_ < 0 || s->left_fd_ < 0) return fail("eventfd: " + err_text(-errno));
    VtestServer* self = s.get();
    host.set_fence_callback([self](uint32_t ctx, uint32_t ring, uint64_t id) {
        std::lock_guard g(self->mu_);
        auto it = self->sessions_.find(ctx);
        if (it != self->sessions_.end()) it->second->fence_retired(ring, id);
    });
    return s;
}

VtestServer::~VtestServer() {
    stop();
    stopping_ = true;
    reap(true);
    host_.set_fence_callback([](uint32_t, uint32_t, uint64_t) {});
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        ::unlink(cfg_.socket_path.c_str());
    }
    if (stop_fd_ >= 0) ::close(stop_fd_);
    if (left_fd_ >= 0) ::close(left_fd_);
}

void VtestServer::stop() {
    const uint64_t one = 1;
    if (stop_fd_ >= 0) [[maybe_unused]] ssize_t w = ::write(stop_fd_, &one, sizeof one);
}

size_t VtestServer::active_clients() const {
    std::lock_guard g(mu_);
    size_t n = 0;
    for (auto& c : clients_) n += !c->done.load();
    return n;
}

void VtestServer::reap(bool all) {
    std::vector<std::unique_ptr<Client>> finished;
    {
        std::lock_guard g(mu_);
        for (auto it = clients_.begin(); it != clients_.end();) {
            if (all || (*it)->done.load()) {
                if (all) ::shutdown((*it)->sock, SHUT_RDWR);
                finished.push_back(std::move(*it));
                it = clients_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& c : finished) {
        if (c->thread.joinable()) c->thread.join();
        ::close(c->sock);
    }
}

void VtestServer::run() {
    log("listening on " + cfg_.socket_path);
    while (!stopping_.load()) {
        // Like virgl_test_server --no-fork (§12.3): a client beyond max_clients is not accepted;
        // it waits in the listen backlog until one leaves (left_fd_ wakes us then).
        const bool full = active_clients() >= cfg_.max_clients;
        pollfd p[3] = {{full ? -1 : listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}, {left_fd_, POLLIN, 0}};
        const int n = ::poll(p, 3, 500);
        if (p[2].revents & POLLIN) {
            uint64_t v;
            [[maybe_unused]] ssize_t r = ::read(left_fd_, &v, sizeof v);
        }
        reap(false);
        if (n < 0 && errno != EINTR) {
            log("poll failed: " + err_text(-errno));
            break;
        }
        if (p[1].revents & POLLIN) break;
        if (!(p[0].revents & POLLIN)) continue;
        const int sock = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (sock < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                log("accept: " + err_text(-errno) + " (backing off)");
                std::this_thread::sleep_for(std::chrono::milliseconds(100)); // not a busy loop
            }
            continue;
        }
        auto c = std::make_unique<Client>();
        c->sock = sock;
        Client* cp = c.get();
        {
            std::lock_guard g(mu_);
            c->ctx_id = next_ctx_id_++;
            clients_.push_back(std::move(c));
        }
        ++accepted_;
        log("client " + std::to_string(cp->ctx_id) + " connected");
        cp->thread = std::thread([this, cp] {
            std::string why;
            {
                auto session = std::make_unique<VtestSession>(cp->sock, host_, cp->ctx_id, cfg_.limits);
                {
                    std::lock_guard g(mu_);
                    sessions_[cp->ctx_id] = session.get();
                }
                why = session->serve(&stopping_);
                std::lock_guard g(mu_);
                sessions_.erase(cp->ctx_id);
            }
            const bool clean = why == "client disconnected" || why == "server shutting down";
            if (!clean) ++dropped_;
            log("client " + std::to_string(cp->ctx_id) + (clean ? " left: " : " dropped: ") + why);
            ::shutdown(cp->sock, SHUT_RDWR);
            cp->done = true;
            const uint64_t one = 1;
            [[maybe_unused]] ssize_t w = ::write(left_fd_, &one, sizeof one);
        });
    }
    stopping_ = true;
    reap(true);
    log("stopped");
}

} // namespace fdnc
