/* The public C API, compiled as C11: what a C driver sees. Exits non-zero on the first failed check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fdnc/fdnc.h>

static int failures;

#define CHECK(cond)                                                                                \
   do {                                                                                            \
      if (!(cond)) {                                                                               \
         fprintf(stderr, "%s:%d: CHECK(%s) failed (%s)\n", __FILE__, __LINE__, #cond,              \
                 fdnc_last_error());                                                               \
         failures++;                                                                               \
      }                                                                                            \
   } while (0)

/* uri NULL: the in-process host with a known VA range; else any host (the realhost suite runs
 * this against fdnc-hostsim and the real virglrenderer over vtest). */
static void test_round_trip(const char *uri)
{
   struct fdnc_device *dev = fdnc_device_open(uri ? uri : "inproc:rtt_us=50,gpu_us=100,va_size=1G");
   CHECK(dev != NULL);
   if (!dev)
      return;

   uint64_t start = 0, size = 0;
   CHECK(fdnc_device_va_range(dev, &start, &size) == 0);
   CHECK(size >= (1ull << 24));
   if (!uri) {
      CHECK(start == 0x100000000ull);
      CHECK(size == (1ull << 30));
   }

   struct fdnc_bo *cmd = fdnc_bo_new(dev, 4096, 0, "cmdstream");
   struct fdnc_bo *data = fdnc_bo_new(dev, 1 << 20, FDNC_BO_NOCACHE, "data");
   CHECK(cmd && data);
   CHECK(fdnc_bo_iova(data) >= start && fdnc_bo_iova(data) + fdnc_bo_size(data) <= start + size);
   CHECK(fdnc_bo_iova(data) % 4096 == 0);

   uint32_t *p = fdnc_bo_map(cmd);
   CHECK(p != NULL);
   if (p)
      p[0] = 0x70268000u; /* a CP_NOP-ish dword: the host model does not decode packets */

   struct fdnc_pipe *pipe = fdnc_pipe_new(dev, 0);
   CHECK(pipe != NULL);
   struct fdnc_submit *submit = fdnc_submit_new(pipe);
   CHECK(fdnc_submit_add_bo(submit, data, FDNC_SUBMIT_BO_READ | FDNC_SUBMIT_BO_WRITE) == 0);
   CHECK(fdnc_submit_add_cmd(submit, cmd, 0, 64) == 0);
   uint32_t fence = 0;
   CHECK(fdnc_submit_flush(submit, &fence) == 0);
   CHECK(fence == 1);
   CHECK(fdnc_submit_flush(submit, &fence) == -EBUSY); /* a submit is flushed once */
   fdnc_submit_del(submit);
   CHECK(fdnc_pipe_wait(pipe, fence, 5000000000ll) == 0);
   CHECK(fdnc_pipe_wait(pipe, fence + 5, 0) == -EINVAL);

   CHECK(fdnc_bo_cpu_prep(data, pipe, FDNC_PREP_READ | FDNC_PREP_NOSYNC) == 0);

   struct fdnc_stats st;
   CHECK(fdnc_device_stats(dev, &st) == 0);
   CHECK(st.faults == 0);
   CHECK(st.async_errors == 0);
   CHECK(st.submits == 1);
   CHECK(st.bos_live == 2);
   CHECK(st.host_waits_bo_new == 0);
   CHECK(st.ccmds > 0 && st.bytes_sent > 0);
   CHECK(fdnc_device_status(dev) == 0);

   fdnc_bo_del(cmd);
   fdnc_bo_del(data);
   fdnc_pipe_del(pipe);
   CHECK(fdnc_device_stats(dev, &st) == 0);
   CHECK(st.bos_live == 0);
   fdnc_device_del(dev);
}

static void test_errors(void)
{
   CHECK(fdnc_device_open("bogus:uri") == NULL);
   CHECK(strlen(fdnc_last_error()) > 0);
   CHECK(fdnc_device_open("inproc:no_such_key=1") == NULL);

   struct fdnc_device *dev = fdnc_device_open(NULL);
   CHECK(dev != NULL);
   if (!dev)
      return;
   CHECK(fdnc_bo_new(dev, 0, 0, NULL) == NULL);
   CHECK(fdnc_bo_new(dev, 4096, 0x80000000u, NULL) == NULL);
   CHECK(fdnc_bo_import_dmabuf(dev, -1) == NULL);

   struct fdnc_bo *shared = fdnc_bo_new(dev, 8192, FDNC_BO_SHARED, "shared");
   CHECK(shared != NULL);
   int fd = fdnc_bo_export_dmabuf(shared);
   CHECK(fd >= 0);
   struct fdnc_bo *again = fdnc_bo_import_dmabuf(dev, fd);
   CHECK(again == shared); /* dedup: the same resource is the same bo */
   fdnc_bo_del(again);
   fdnc_bo_del(shared);
   if (fd >= 0)
      close(fd);
   fdnc_device_del(dev);
}

/* c_api_test [URI]: with a URI, only the round trip against that host. */
int main(int argc, char **argv)
{
   test_round_trip(argc > 1 ? argv[1] : NULL);
   if (argc <= 1)
      test_errors();
   if (failures) {
      fprintf(stderr, "c_api: %d check(s) failed\n", failures);
      return 1;
   }
   printf("c_api: all checks passed\n");
   return 0;
}
