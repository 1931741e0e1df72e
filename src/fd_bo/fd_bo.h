// fd_bo's public contract (Mesa's freedreno_drmif.h): the one header a driver author includes.
//
//   Device::open(transport, options, &error)       a native context (capi's open_device: from a URI)
//   Device::bo_new / bo_new_at / bo_import         buffers; bo_new never waits on the host
//   Device::pipe_new                                a submitqueue
//   Device::status / stats / retire / trim_cache    context state, counters, housekeeping
//   Bo::iova / size / map / upload / cpu_prep / set_name / export_dmabuf / ref / unref
//   Pipe::wait, Submit(pipe): add_bo / add_cmd / flush
//   kBo* flags, DeviceOptions, DeviceStats, IovaMode, HostWait (why a call waited)
//
// The class definitions live in device.h, bo.h and pipe.h; their members marked "core-private"
// (requests(), transport(), bo_destroy(), backing(), ...) are the core's own contract with
// BoCache, BoHeap, Pipe and Submit and are not for drivers. What only the core's files share
// (helpers, constants, BoCache/BoHeap) is in fd_bo_priv.h.
#pragma once

#include "fd_bo/bo.h"
#include "fd_bo/device.h"
#include "fd_bo/host_waits.h"
#include "fd_bo/pipe.h"
