// expect_exit CODE PROGRAM [ARGS...]: runs PROGRAM and succeeds only if it exits normally with
// exactly CODE. A meson `should_fail` test passes on any non-zero status, a crash (SIGSEGV,
// SIGABRT) included; a test of a documented exit status must be able to fail on those.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: expect_exit CODE PROGRAM [ARGS...]\n");
        return 2;
    }
    char* end = nullptr;
    const long want = std::strtol(argv[1], &end, 10);
    if (*end != '\0' || want < 0 || want > 255) {
        std::fprintf(stderr, "expect_exit: bad exit code '%s'\n", argv[1]);
        return 2;
    }
    const pid_t pid = fork();
    if (pid < 0) {
        std::perror("expect_exit: fork");
        return 2;
    }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        std::fprintf(stderr, "expect_exit: exec %s: %s\n", argv[2], std::strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        std::perror("expect_exit: waitpid");
        return 2;
    }
    if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "expect_exit: %s died of signal %d (%s), expected exit %ld\n", argv[2], WTERMSIG(status),
                     strsignal(WTERMSIG(status)), want);
        return 1;
    }
    if (WEXITSTATUS(status) != want) {
        std::fprintf(stderr, "expect_exit: %s exited %d, expected %ld\n", argv[2], WEXITSTATUS(status), want);
        return 1;
    }
    return 0;
}
