// The in-process host: the host half of the in-process transport (virtio_proto/inproc_link.h).
// A host thread consumes execbufs, blob creates (with their tunnelled ccmds), unrefs and round
// trips strictly in order. Latency is injected per direction, as a delay line with absolute
// deadlines: an item is processed rtt/2 after it was sent (back-to-back items stay back to back;
// the delay never serializes them), and a host answer (a fence retire, a call's result) becomes
// visible to the guest rtt/2 after the host produced it. So only calls that wait pay the round
// trip. The line runs on its own clock: an item starts at its deadline or when the one before it
// ended, whichever is later, and the host thread's wake-up lateness is not added to an answer's
// time (it is never visible before it was really produced, though). Guest waits spin the last
// kInprocSpin (inproc_link.h) instead of trusting a timed wake-up.
//
// Several links may share one Host (one context each, like processes in a VM); the Host is then
// called from each link's host thread and must be thread-safe. One router per Host sends the
// Host's single fence callback to the link owning the context and hands out res_ids unique across
// its contexts.
#pragma once

#include <memory>
#include <string>

#include "host_sim/host_sim_config.h"
#include "virtio_proto/host.h"
#include "virtio_proto/inproc_link.h"

namespace fdnc::host {

// A link over a Host the caller keeps alive (tests share one Host between several links).
std::unique_ptr<InprocHostLink> make_inproc_host(Host& host, InprocConfig cfg = {});
// A link that owns its Host.
std::unique_ptr<InprocHostLink> make_inproc_host(std::unique_ptr<Host> host, InprocConfig cfg = {});
// A link over a fresh MsmRenderer configured from cfg (host_sim_config below): what an
// "inproc:..." URI opens. The factory inproc_host_dep registers.
std::unique_ptr<InprocHostLink> make_inproc_msm_host(const InprocConfig& cfg, std::string* error = nullptr);

// The host model an "inproc:..." URI describes: va range, gpu/chip ids (0 = default), gpu_us as
// the GPU execution time, oom_after = GEM_NEWs that succeed before every later one is -ENOMEM.
// Real-time clock. The one place InprocConfig becomes a HostSimConfig.
HostSimConfig host_sim_config(const InprocConfig& inproc);

// Registers make_inproc_msm_host as this program's in-process host (register_inproc_host).
// Called at start-up by the inproc_host_dep library; idempotent.
void register_inproc_msm_host();

} // namespace fdnc::host
