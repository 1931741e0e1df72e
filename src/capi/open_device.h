// Opening a device from a URI: the one place that knows every transport and the in-process host,
// so fd_bo itself stays free of host_sim (DESIGN.md arrows). Used by the C API and the tools.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "fd_bo/device.h"
#include "virtio_proto/inproc_transport.h"
#include "virtio_proto/transport.h"

namespace fdnc {

class Host;

// An in-process transport over a fresh host_sim host configured from cfg (rtt, gpu time, VA
// range, ids, OOM injection).
std::unique_ptr<Transport> open_inproc_transport(const InprocConfig& cfg);

// "inproc[:k=v,...]", "vtest:[/path/to/socket]", "virtgpu:[/dev/dri/renderDNNN]". Empty = "inproc".
std::unique_ptr<Transport> open_transport_uri(std::string_view uri, std::string* error);

std::unique_ptr<Device> open_device(std::string_view uri, const DeviceOptions& opts, std::string* error);

} // namespace fdnc
