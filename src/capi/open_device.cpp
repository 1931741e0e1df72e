#include "capi/open_device.h"

#include "transports/transport_uri.h"

namespace fdnc {

std::unique_ptr<Transport> open_transport_uri(std::string_view uri, std::string* error) {
    return open_transport(uri, error);
}

std::unique_ptr<Device> open_device(std::string_view uri, const DeviceOptions& opts, std::string* error) {
    auto t = open_transport_uri(uri, error);
    if (!t) return nullptr;
    return Device::open(std::move(t), opts, error);
}

} // namespace fdnc
