// IoctlLog: FDNC_SHIM_LOG (one decoded line per ioctl and per node open/close/mmap) and
// FDNC_SHIM_STATS (JSON counts at exit).
//
// Line format (tab separated, one line per event, appended and flushed per line):
//   <NAME>\t<result>\t<details>
//   NAME     VERSION, GET_CAP, GET_UNIQUE, SET_CLIENT_NAME, GEM_CLOSE, PRIME_HANDLE_TO_FD,
//            PRIME_FD_TO_HANDLE, MSM_GET_PARAM, MSM_SET_PARAM, MSM_GEM_NEW, MSM_GEM_INFO,
//            MSM_GEM_CPU_PREP, MSM_GEM_CPU_FINI, MSM_GEM_SUBMIT, MSM_WAIT_FENCE, MSM_GEM_MADVISE,
//            MSM_SUBMITQUEUE_NEW, MSM_SUBMITQUEUE_CLOSE, MSM_SUBMITQUEUE_QUERY, SYNCOBJ_<nr>,
//            IOCTL_0x<request> (anything else); and OPEN, CLOSE, DUP, MMAP, MUNMAP for the node
//   result   0 or -ENAME (e.g. -EINVAL)
//   details  space-separated key=value fields: the decoded struct after the call (outputs
//            included), then fd=<the node fd>; e.g. "info=SET_IOVA handle=3 value=0x100010000 fd=5"
#pragma once

#include <string>

#include "virtio_proto/msm_names.h" // errno_name

namespace fdnc::shim {

const char* ioctl_name(unsigned long request); // static storage, or nullptr if unknown
std::string ioctl_details(unsigned long request, const void* arg);

// Process-wide log and stats (from shim_config()); every call is thread-safe and cheap when off.
void log_ioctl(int fd, unsigned long request, const void* arg, int result);
void log_event(const char* name, int result, const std::string& details);
bool log_enabled();
// Writes FDNC_SHIM_STATS (at exit, and each time the last fd of a node file closes).
void write_stats();

} // namespace fdnc::shim
