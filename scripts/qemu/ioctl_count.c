/* Guest-side ioctl counter for scripts/qemu-ci.sh --host native (LD_PRELOAD in the guest): counts
 * every ioctl() by request and, at exit, writes "<name> <count>" lines to $FDNC_IOCTL_COUNT_OUT.
 * Used to measure how many guest kernel calls one bo_new costs over the virtgpu transport. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOTS 64
static struct { unsigned long req; unsigned long n; } counts[SLOTS];

static const char* virtgpu_name(unsigned nr) {
    static const char* names[] = {"?", "MAP", "EXECBUFFER", "GETPARAM", "RESOURCE_CREATE",
                                  "RESOURCE_INFO", "TRANSFER_FROM_HOST", "TRANSFER_TO_HOST", "WAIT",
                                  "GET_CAPS", "RESOURCE_CREATE_BLOB", "CONTEXT_INIT"};
    return nr >= 0x40 && nr - 0x40 < sizeof names / sizeof names[0] ? names[nr - 0x40] : NULL;
}

int ioctl(int fd, unsigned long req, ...) {
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    va_start(ap, req);
    void* arg = va_arg(ap, void*);
    va_end(ap);
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    for (int i = 0; i < SLOTS; i++) {
        unsigned long cur = __atomic_load_n(&counts[i].req, __ATOMIC_ACQUIRE);
        if (cur == 0 && __atomic_compare_exchange_n(&counts[i].req, &cur, req, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            cur = req;
        if (cur == req) {
            __atomic_add_fetch(&counts[i].n, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    return real(fd, req, arg);
}

__attribute__((destructor)) static void dump(void) {
    const char* out = getenv("FDNC_IOCTL_COUNT_OUT");
    FILE* f = out ? fopen(out, "w") : NULL;
    if (!f)
        return;
    unsigned long total = 0;
    for (int i = 0; i < SLOTS && counts[i].req; i++) {
        unsigned nr = counts[i].req & 0xff, type = (counts[i].req >> 8) & 0xff;
        const char* name = type == 'd' ? virtgpu_name(nr) : NULL;
        if (name)
            fprintf(f, "%s=%lu\n", name, counts[i].n);
        else
            fprintf(f, "0x%lx=%lu\n", counts[i].req, counts[i].n);
        total += counts[i].n;
    }
    fprintf(f, "total=%lu\n", total);
    fclose(f);
}
