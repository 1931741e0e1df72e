// A host that dies under test (the real virgl_test_server with the shim preloaded) should say
// where: on SIGSEGV, SIGBUS, SIGFPE or SIGABRT the shim writes the signal and a backtrace to
// stderr (the server's log), then lets the default action run (core dump, exit status).
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>

#include "crash_report.h"

namespace fdnc::shim {

namespace {

void on_fatal_signal(int sig) {
    // Only async-signal-safe calls: write(2) and backtrace_symbols_fd (backtrace itself is
    // primed at install time so it does not load libgcc here).
    const char* name = strsignal(sig);
    const char head[] = "fdnc drm_shim: the host process got a fatal signal: ";
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, head, sizeof head - 1);
    w = ::write(STDERR_FILENO, name, std::strlen(name));
    w = ::write(STDERR_FILENO, "\n", 1);
    void* frames[64];
    const int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

} // namespace

void install_crash_report() {
    void* prime[1];
    backtrace(prime, 1);
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGABRT})
        sigaction(sig, &sa, nullptr);
}

} // namespace fdnc::shim
