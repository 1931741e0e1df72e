// InfoReport: what fdnc-info finds about a native context behind a URI, as data (printed as a
// table or as JSON). Probing creates a context and its shared page, then closes it again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "virtio_proto/drm_capset.h"
#include "transports/virtgpu_transport.h"

namespace fdnc::info {

struct Check {
    std::string name;
    bool ok = false;
    std::string detail;
};

struct Report {
    std::string uri;
    std::string transport;  // inproc / vtest / virtgpu ("" if it did not open)
    std::string detail;     // socket path, device node
    bool host_assigns_res_id = false;
    uint32_t page_size = 0;
    uint32_t vtest_protocol = 0;            // vtest only
    std::optional<VirtgpuProbe> virtgpu;    // virtgpu only
    int capset_size = -1;                   // < 0: not read
    wire::virgl_renderer_capset_drm caps{};
    uint32_t rings = 0;                     // ring 0 + one per priority (F1)
    std::vector<Check> checks;
    bool usable = false;
    std::string error; // the first failure
};

// Runs every check; never throws. `timeout_ms` bounds vtest socket I/O.
Report probe(const std::string& uri, int timeout_ms);

nlohmann::json to_json(const Report& r);
std::string to_table(const Report& r);

} // namespace fdnc::info
