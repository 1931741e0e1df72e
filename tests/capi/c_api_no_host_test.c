/* libfdnc ships without a host model: an "inproc:" URI (and the empty URI, which means inproc)
 * fails with NULL and an fdnc_last_error() that says why, instead of crashing or half-opening. */
#include <stdio.h>
#include <string.h>

#include "fdnc/fdnc.h"

int main(void)
{
   const char *uris[] = {"inproc", "inproc:rtt_us=50", "", NULL};
   for (unsigned i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
      struct fdnc_device *dev = fdnc_device_open(uris[i]);
      const char *err = fdnc_last_error();
      if (dev) {
         fprintf(stderr, "fdnc_device_open(%s) opened a device in libfdnc\n", uris[i] ? uris[i] : "NULL");
         fdnc_device_del(dev);
         return 1;
      }
      if (!err || !strstr(err, "in-process host")) {
         fprintf(stderr, "fdnc_device_open(%s): unclear error '%s'\n", uris[i] ? uris[i] : "NULL",
                 err ? err : "(null)");
         return 1;
      }
   }
   /* A bad key is still reported as such (the URI is parsed before the host is looked for). */
   if (fdnc_device_open("inproc:no_such_key=1") || !strstr(fdnc_last_error(), "no_such_key")) {
      fprintf(stderr, "bad inproc key: '%s'\n", fdnc_last_error());
      return 1;
   }
   printf("libfdnc without an in-process host: %s\n", fdnc_last_error());
   return 0;
}
