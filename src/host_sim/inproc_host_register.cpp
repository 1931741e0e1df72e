// Linked whole (host_sim's inproc_host_dep): registers host_sim's MsmRenderer as this program's
// in-process host at start-up, so "inproc:..." URIs open wherever the host model is linked.
#include "host_sim/inproc_host.h"

namespace {

[[maybe_unused]] const bool g_registered = [] {
    fdnc::host::register_inproc_msm_host();
    return true;
}();

} // namespace
