// Opening a Transport from a URI:
//   "inproc[:k=v,...]"          in-process host (parse_inproc_uri); needs a host, see below
//   "vtest[:/path/to/socket]"   VtestTransport; no path: $VTEST_SOCKET_NAME, else /tmp/.virgl_test
//   "virtgpu[:/dev/dri/renderDNNN]"  VirtgpuTransport; no path: the first virtio_gpu render node
// An empty URI means "inproc".
//
// The transports may not depend on host_sim (DESIGN.md arrows), so the inproc branch opens the
// in-process host the program registered (virtio_proto/inproc_link.h: host_sim's inproc_host_dep
// registers one when linked), or the opener a caller passes.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "transports/inproc_transport.h"
#include "virtio_proto/transport.h"

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
// capability, ...). inproc: `inproc` if given, else the registered in-process host; with neither
// an error saying so (e.g. in libfdnc, which ships no host model).
std::unique_ptr<Transport> open_transport(std::string_view uri, std::string* error,
                                          const InprocOpener& inproc = {});

} // namespace fdnc
