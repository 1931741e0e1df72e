// Opening a device from a URI: every client transport through transports/transport_uri.h, so
// fd_bo itself stays free of transports it does not need (DESIGN.md arrows). Used by the C API and
// the tools. No host model here: "inproc:" opens the in-process host the program registered
// (host_sim's inproc_host_dep), and fails with a reason where none is (libfdnc).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "fd_bo/device.h"
#include "virtio_proto/transport.h"

namespace fdnc {

// "inproc[:k=v,...]", "vtest:[/path/to/socket]", "virtgpu:[/dev/dri/renderDNNN]". Empty = "inproc".
std::unique_ptr<Transport> open_transport_uri(std::string_view uri, std::string* error);

std::unique_ptr<Device> open_device(std::string_view uri, const DeviceOptions& opts, std::string* error);

} // namespace fdnc
