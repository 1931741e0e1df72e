// Opening a Transport from a URI:
//   "inproc[:k=v,...]"          in-process host (parse_inproc_uri); needs a host, see below
//   "vtest[:/path/to/socket]"   VtestTransport; no path: $VTEST_SOCKET_NAME, else /tmp/.virgl_test
//   "virtgpu[:/dev/dri/renderDNNN]"  VirtgpuTransport; no path: the first virtio_gpu render node
// An empty URI means "inproc".
//
// virtio_proto may not depend on host_sim (DESIGN.md arrows), so the inproc branch is a hook: the
// caller that links host_sim (src/capi's open_transport_uri, the tools) passes an opener.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "inproc_transport.h"
#include "transport.h"

namespace fdnc {

enum class TransportKind { Inproc, Vtest, Virtgpu };

struct TransportUri {
    TransportKind kind = TransportKind::Inproc;
    std::string path;     // vtest socket / virtgpu node ("" = default)
    InprocConfig inproc;  // kind == Inproc
};

// Strict: an unknown scheme or a bad inproc key is an error naming the reason.
std::optional<TransportUri> parse_transport_uri(std::string_view uri, std::string* error);

using InprocOpener = std::function<std::unique_ptr<Transport>(const InprocConfig&, std::string* error)>;

// nullptr + *error (the transport's own message: no server, no virtio_gpu node, missing
// capability, ...). inproc without an opener is an error saying so.
std::unique_ptr<Transport> open_transport(std::string_view uri, std::string* error,
                                          const InprocOpener& inproc = {});

} // namespace fdnc
