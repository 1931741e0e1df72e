#include "hostsim_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace fdnc::test {

std::string hostsim_binary() {
    const char* p = std::getenv("FDNC_HOSTSIM");
    return p ? p : "fdnc-hostsim";
}

std::string info_binary() {
    const char* p = std::getenv("FDNC_INFO");
    return p ? p : "fdnc-info";
}

namespace {

bool can_connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(s);
    return ok;
}

} // namespace

HostsimProcess::HostsimProcess(std::vector<std::string> extra_args) {
    char tmpl[] = "/tmp/fdnc-vtest-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    socket_ = dir_ + "/vtest.sock";
    log_ = dir_ + "/hostsim.log";
    std::vector<std::string> args = {hostsim_binary(), "--socket", socket_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
        const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) ::dup2(fd, 2);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    // A process start is not a timed assertion: poll until it listens or exits.
    for (int i = 0; i < 1000 && pid_ > 0; ++i) {
        if (can_connect(socket_)) {
            ready_ = true;
            return;
        }
        int st;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
            pid_ = -1;
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

HostsimProcess::~HostsimProcess() {
    if (pid_ > 0) {
        resume();
        terminate();
    }
    if (!dir_.empty()) {
        ::unlink(socket_.c_str());
        ::unlink(log_.c_str());
        ::rmdir(dir_.c_str());
    }
}

std::string HostsimProcess::log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void HostsimProcess::kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

int HostsimProcess::terminate() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// kill() returns before the process is stopped: wait until every thread shows state T, so the
// caller knows nothing more will be served.
void HostsimProcess::pause() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGSTOP);
    const std::string tasks = "/proc/" + std::to_string(pid_) + "/task";
    for (int i = 0; i < 500; ++i) {
        bool all = true;
        if (DIR* d = ::opendir(tasks.c_str())) {
            while (dirent* e = ::readdir(d)) {
                if (e->d_name[0] == '.') continue;
                std::ifstream f(tasks + "/" + e->d_name + "/stat");
                std::string line;
                std::getline(f, line);
                const auto close_paren = line.rfind(')');
                if (close_paren == std::string::npos || close_paren + 2 >= line.size()) continue;
                const char state = line[close_paren + 2];
                if (state != 'T' && state != 't') all = false;
            }
            ::closedir(d);
        }
        if (all) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

void HostsimProcess::resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
}

} // namespace fdnc::test
