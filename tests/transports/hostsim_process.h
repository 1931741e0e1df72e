// HostsimProcess: a real fdnc-hostsim process on a socket in a fresh temporary directory, for the
// vtest tests. The binary comes from $FDNC_HOSTSIM (set by tests/transports/meson.build).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace fdnc::test {

class HostsimProcess {
public:
    explicit HostsimProcess(std::vector<std::string> extra_args = {});
    ~HostsimProcess(); // SIGTERM, reap, remove the temp dir
    HostsimProcess(const HostsimProcess&) = delete;
    HostsimProcess& operator=(const HostsimProcess&) = delete;

    bool ok() const { return pid_ > 0 && ready_; }
    const std::string& socket_path() const { return socket_; }
    const std::string& log_path() const { return log_; }
    std::string log() const; // the server's stderr so far
    pid_t pid() const { return pid_; }

    void kill_now();              // SIGKILL + reap: the server dies mid-stream
    int terminate();              // SIGTERM + reap; returns the exit status (or -1)
    void pause();                 // SIGSTOP: a stalled server
    void resume();                // SIGCONT

private:
    std::string dir_, socket_, log_;
    pid_t pid_ = -1;
    bool ready_ = false;
};

std::string hostsim_binary();
std::string info_binary();

} // namespace fdnc::test
