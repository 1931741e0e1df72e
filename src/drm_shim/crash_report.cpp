// A host that dies under test (the real virgl_test_server with the shim preloaded) should say
// how: on a fatal signal the shim writes the signal, its code and (for a signal another process
// sent) the sender's pid to stderr (the server's log), with a backtrace for a fault, then lets the
// default action run (core dump, exit status). The realhost suite saw the server vanish with an
// empty log; the faults alone were caught then, so a SIGILL (a compiler's trap instruction), a
// stack overflow or a signal from outside left nothing.
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "crash_report.h"

namespace fdnc::shim {

namespace {

void put(const char* s) { [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, s, std::strlen(s)); }

void put_number(long v) {
    char buf[24];
    char* p = buf + sizeof buf;
    *--p = '\0';
    const bool neg = v < 0;
    unsigned long u = neg ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
    do {
        *--p = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) *--p = '-';
    put(p);
}

bool is_fault(int sig) { return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP; }

void on_fatal_signal(int sig, siginfo_t* info, void*) {
    // Only async-signal-safe calls: write(2) and backtrace_symbols_fd (backtrace itself is
    // primed at install time so it does not load libgcc here).
    put("fdnc drm_shim: pid ");
    put_number(getpid());
    put(" got a fatal signal: ");
    put(strsignal(sig));
    put(" (code ");
    put_number(info ? info->si_code : 0);
    if (info && info->si_code <= 0) { // SI_USER, SI_QUEUE, SI_TKILL: sent by a process
        put(", sent by pid ");
        put_number(info->si_pid);
    } else if (info && is_fault(sig)) {
        put(", address 0x");
        char hex[17];
        uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
        for (int i = 15; i >= 0; --i, a >>= 4) hex[i] = "0123456789abcdef"[a & 15];
        hex[16] = '\0';
        put(hex);
    }
    put(")\n");
    if (is_fault(sig) || sig == SIGABRT) {
        void* frames[64];
        const int n = backtrace(frames, 64);
        backtrace_symbols_fd(frames, n, STDERR_FILENO);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

} // namespace

void install_crash_report() {
    void* prime[1];
    backtrace(prime, 1);
    // An alternate stack for the thread that loads the shim (the server's main thread): a stack
    // overflow there is a SIGSEGV the handler can still report. Never freed: it lives as long as
    // the process.
    stack_t ss{};
    ss.ss_size = 64 * 1024;
    ss.ss_sp = std::malloc(ss.ss_size);
    if (ss.ss_sp && sigaltstack(&ss, nullptr) != 0) std::free(ss.ss_sp);
    struct sigaction sa {};
    sa.sa_sigaction = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
    // Signals whose default action ends the process, except SIGKILL (cannot be caught), SIGPIPE
    // (start-server.sh ignores it) and those a process may already handle itself (left alone).
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL, SIGTRAP, SIGSYS, SIGXCPU, SIGXFSZ, SIGTERM,
                    SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM}) {
        struct sigaction old {};
        if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
            sigaction(sig, &sa, nullptr);
    }
}

} // namespace fdnc::shim
